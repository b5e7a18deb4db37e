/**
 * The only code that runs nft. Everything it applies was rendered by
 * render.ts; each apply is one `nft -f -`, which the kernel commits as one
 * transaction or not at all.
 *
 * The process runner is injected (`NftExec`), so tests can aim the same code at
 * a network namespace of their own (`nftExec({ netns })`) instead of the host.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';
import { DEFAULT_TABLES, TableNames } from './names';
import { InstalledRules, parseInstalledRules } from './parse';
import { renderRemoveAll } from './render';

export interface ExecResult {
  /** Exit code; null when the process was killed (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs nft with these arguments, feeding `input` on stdin. Rejects only when nft could not be run at all. */
export type NftExec = (args: readonly string[], input?: string) => Promise<ExecResult>;

export interface NftExecOptions {
  /** Path or name of the nft binary. */
  binary?: string;
  /** Run inside this network namespace (`ip netns exec <netns> nft …`): for tests. */
  netns?: string;
  /** Kill nft after this long; a transaction that takes longer is stuck (a lock, a kernel wait). */
  timeoutMs?: number;
}

export function nftExec(opts: NftExecOptions = {}): NftExec {
  const binary = opts.binary ?? 'nft';
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return (args, input) =>
    new Promise((resolve, reject) => {
      const [cmd, ...pre] = opts.netns === undefined ? [binary] : ['ip', 'netns', 'exec', opts.netns, binary];
      const child = spawn(cmd!, [...pre, ...args], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      // nft may exit before reading all of a bad script; that shows in its exit status, not as EPIPE here.
      child.stdin.on('error', () => undefined);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      child.stdin.end(input ?? '');
    });
}

const systemNft = nftExec();

function spawnFailure(e: unknown, what: string): CoiError {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'ENOENT') {
    return new CoiError(ErrorCodes.COMMAND_FAILED, `cannot ${what}: the nft program is not installed`, {
      remedy: { title: 'Install nftables', shell: 'sudo apt-get install nftables' },
      cause: e,
    });
  }
  return new CoiError(ErrorCodes.COMMAND_FAILED, `cannot ${what}: nft could not be started (${err.message})`, { cause: e });
}

/** nft's own words, without the echo of the whole script some errors carry. */
function nftMessage(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trimEnd()).filter(Boolean);
  const errors = lines.filter((l) => /Error:/.test(l));
  return (errors.length ? errors : lines).slice(0, 5).join('; ') || 'no message';
}

async function run(nft: NftExec, args: string[], input: string | undefined, what: string): Promise<ExecResult> {
  let r: ExecResult;
  try {
    r = await nft(args, input);
  } catch (e) {
    throw spawnFailure(e, what);
  }
  if (r.code === 0) return r;
  const details = { args, exitCode: r.code, signal: r.signal, stderr: r.stderr.slice(0, 8000) };
  if (r.code === null) {
    throw new CoiError(ErrorCodes.TIMEOUT, `cannot ${what}: nft did not finish and was stopped (${r.signal ?? 'killed'})`, { details });
  }
  if (/Operation not permitted|Permission denied/.test(r.stderr)) {
    throw new CoiError(ErrorCodes.NOT_PERMITTED, `cannot ${what}: nft needs root (CAP_NET_ADMIN): ${nftMessage(r.stderr)}`, { details });
  }
  throw new CoiError(ErrorCodes.COMMAND_FAILED, `cannot ${what}: ${nftMessage(r.stderr)}`, { details });
}

/** Applies a rendered script as one transaction: all of it, or (on error) none of it. */
export async function applyRuleset(script: string, nft: NftExec = systemNft): Promise<void> {
  await run(nft, ['-f', '-'], script, 'apply the network rules');
}

/**
 * The same, through a file the script is written to completely first (then
 * renamed into place). What the guard uses: a guard killed while feeding nft's
 * stdin would hand it a truncated script, and a script cut after its
 * `delete table` lines is valid nft — it would commit "no rules at all". With a
 * file, nft is either not started yet or reads the whole script.
 */
export async function applyRulesetFile(script: string, dir: string, nft: NftExec = systemNft): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'ruleset.nft');
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, script, { mode: 0o600 });
  await fs.rename(tmp, file);
  await run(nft, ['-f', file], undefined, 'apply the network rules');
}

/** Asks the kernel whether the script would apply, changing nothing (`nft -c`). */
export async function checkRuleset(script: string, nft: NftExec = systemNft): Promise<void> {
  await run(nft, ['-c', '-f', '-'], script, 'validate the network rules');
}

/** Removes every table of ours (and nothing else); succeeds when there is none. */
export async function removeAllRules(nft: NftExec = systemNft, tables: TableNames = DEFAULT_TABLES): Promise<void> {
  await run(nft, ['-f', '-'], renderRemoveAll(tables), 'remove the network rules');
}

/** What is installed now, from `nft -j list ruleset`. */
export async function listInstalledRules(nft: NftExec = systemNft, tables: TableNames = DEFAULT_TABLES): Promise<InstalledRules> {
  const r = await run(nft, ['-j', 'list', 'ruleset'], undefined, 'list the network rules');
  return parseInstalledRules(r.stdout, tables);
}

/** The whole ruleset as nft prints it (to see which marks other guards' tables use). */
export async function listRulesetText(nft: NftExec = systemNft): Promise<string> {
  return (await run(nft, ['list', 'ruleset'], undefined, 'list the network rules')).stdout;
}
