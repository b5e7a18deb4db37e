/**
 * `coi`: finds the command, runs it, and turns errors into a message and an
 * exit code. Every command works without VS Code; the extension calls the same
 * core functions through JSON-RPC.
 */
import { CoiError, ErrorCodes, formatErrorForTerminal, toCoiError } from '../errors';
import { IncusClient } from '../incus/client';
import { UnixSocketTransport } from '../incus/transport';
import { createLog } from '../log';
import { COI_VERSION } from '../version';
import type { CliContext, Command } from './command';
import { attachCommand } from './commands/attach';
import { buildCommand, buildWatchdogCommand } from './commands/build';
import { imageCommand } from './commands/image';
import { auditCommand } from './commands/audit';
import { cleanCommand, killCommand, persistCommand, resumeCommand, shutdownCommand } from './commands/lifecycle';
import { configCommand } from './commands/config';
import { fileCommand } from './commands/file';
import { guardCommand } from './commands/guard';
import { healthCommand } from './commands/health';
import { listCommand } from './commands/list';
import { monitorCommand } from './commands/monitor';
import { poolCommand } from './commands/pool';
import { profileCommand } from './commands/profile';
import { runCommand } from './commands/run';
import { schemaCommand } from './commands/schema';
import { setupCommand } from './commands/setup';
import { shellCommand } from './commands/shell';
import { snapshotCommand } from './commands/snapshot';
import { tmuxCommand } from './commands/tmux';
import { trustCommand, untrustCommand } from './commands/trust';
import { versionCommand } from './commands/version';

export const commands: Command[] = [
  shellCommand,
  runCommand,
  attachCommand,
  listCommand,
  shutdownCommand,
  killCommand,
  persistCommand,
  resumeCommand,
  cleanCommand,
  poolCommand,
  snapshotCommand,
  auditCommand,
  monitorCommand,
  fileCommand,
  tmuxCommand,
  buildCommand,
  imageCommand,
  configCommand,
  profileCommand,
  trustCommand,
  untrustCommand,
  schemaCommand,
  setupCommand,
  guardCommand,
  healthCommand,
  versionCommand,
  buildWatchdogCommand,
];

export function helpText(): string {
  const shown = commands.filter((c) => !c.hidden);
  const width = Math.max(...shown.map((c) => c.name.length));
  const lines = shown.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `coi ${COI_VERSION} — run AI coding agents in hardened Incus containers`,
    '',
    'usage: coi <command> [flags]',
    '',
    'commands:',
    ...lines,
    '',
    'Run "coi <command> --help" for a command\'s flags.',
    '',
  ].join('\n');
}

export function defaultContext(env: NodeJS.ProcessEnv = process.env): CliContext {
  let incus: IncusClient | undefined;
  return {
    env,
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    log: createLog('coi'),
    incus: () => (incus ??= new IncusClient(new UnixSocketTransport(), env.COI_INCUS_PROJECT ? { project: env.COI_INCUS_PROJECT } : {})),
  };
}

export async function runCli(argv: string[], ctx: CliContext = defaultContext()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    ctx.out(helpText());
    return 0;
  }
  if (name === '--version') {
    ctx.out(`${COI_VERSION}\n`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    ctx.err(formatErrorForTerminal(new CoiError(ErrorCodes.INVALID_INPUT, `unknown command "${name}"`, { remedy: { title: 'See the commands', shell: 'coi --help' } })) + '\n');
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    ctx.out(`${cmd.summary}\n\nusage: ${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest, ctx);
  } catch (e) {
    const err = toCoiError(e);
    ctx.err(formatErrorForTerminal(err) + '\n');
    if (err.code === ErrorCodes.INTERNAL && err.stack) ctx.log.debug(err.stack);
    return err.code === ErrorCodes.INVALID_INPUT ? 2 : 1;
  }
}
