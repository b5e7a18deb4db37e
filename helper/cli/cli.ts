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
import { z } from 'zod';
import type { CliContext, Command } from './command';

/**
 * The commands, each loaded when it runs: a command's modules (and the
 * schemas they build when loaded) cost every other command its start-up
 * time otherwise, a fifth of a warm `coi run`. esbuild turns each require()
 * into a module initialised on first use. Order: the help's.
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const table: { name: string; hidden?: true; load: () => Command }[] = [
  { name: 'shell', load: () => require('./commands/shell').shellCommand },
  { name: 'run', load: () => require('./commands/run').runCommand },
  { name: 'attach', load: () => require('./commands/attach').attachCommand },
  { name: 'list', load: () => require('./commands/list').listCommand },
  { name: 'shutdown', load: () => require('./commands/lifecycle').shutdownCommand },
  { name: 'kill', load: () => require('./commands/lifecycle').killCommand },
  { name: 'persist', load: () => require('./commands/lifecycle').persistCommand },
  { name: 'resume', load: () => require('./commands/lifecycle').resumeCommand },
  { name: 'clean', load: () => require('./commands/lifecycle').cleanCommand },
  { name: 'pool', load: () => require('./commands/pool').poolCommand },
  { name: 'snapshot', load: () => require('./commands/snapshot').snapshotCommand },
  { name: 'audit', load: () => require('./commands/audit').auditCommand },
  { name: 'monitor', load: () => require('./commands/monitor').monitorCommand },
  { name: 'file', load: () => require('./commands/file').fileCommand },
  { name: 'tmux', load: () => require('./commands/tmux').tmuxCommand },
  { name: 'build', load: () => require('./commands/build').buildCommand },
  { name: 'image', load: () => require('./commands/image').imageCommand },
  { name: 'config', load: () => require('./commands/config').configCommand },
  { name: 'profile', load: () => require('./commands/profile').profileCommand },
  { name: 'trust', load: () => require('./commands/trust').trustCommand },
  { name: 'untrust', load: () => require('./commands/trust').untrustCommand },
  { name: 'schema', load: () => require('./commands/schema').schemaCommand },
  { name: 'setup', load: () => require('./commands/setup').setupCommand },
  { name: 'guard', load: () => require('./commands/guard').guardCommand },
  { name: 'health', load: () => require('./commands/health').healthCommand },
  { name: 'version', load: () => require('./commands/version').versionCommand },
  { name: '__build-watchdog', hidden: true, load: () => require('./commands/build').buildWatchdogCommand },
];
/* eslint-enable @typescript-eslint/no-require-imports */

/** Every command, loaded (the help, and tests that look at them all). */
export function allCommands(): Command[] {
  return table.map((t) => t.load());
}

/** The names the table finds commands by: each must be its command's own name. */
export function tableNames(): { name: string; hidden: boolean }[] {
  return table.map((t) => ({ name: t.name, hidden: t.hidden === true }));
}

export function helpText(): string {
  const shown = allCommands().filter((c) => !c.hidden);
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
  // One process, one command: zod's compiled parsers (generated and compiled per object schema on its
  // first parse) cost a short command more than they save. Set before the command builds its schemas;
  // not for the guard, a daemon that parses the same messages all day. Imported, not required: a
  // require() resolves to zod's CommonJS build, a second zod the schemas never see.
  if (name !== 'guard') z.config({ jitless: true });
  const cmd = table.find((c) => c.name === name)?.load();
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
