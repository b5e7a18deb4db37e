/**
 * The one place the helper runs host programs (apt-get, debootstrap, nft, ip…).
 * Failures become COMMAND_FAILED errors that quote the command and the tail of
 * its stderr, so a person can see what went wrong without a debugger.
 */
import { execa } from 'execa';
import { accessSync, constants } from 'node:fs';
import { CoiError, ErrorCodes } from '../errors';

export interface RunOptions {
  input?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** Stream output lines here instead of capturing only. */
  onLine?: (line: string) => void;
  cwd?: string;
  signal?: AbortSignal;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await tryRun(cmd, args, opts);
  if (r.exitCode !== 0) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n');
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `${[cmd, ...args].join(' ').slice(0, 300)} exited with ${r.exitCode}${tail ? `:\n${tail}` : ''}`, {
      details: { cmd, args, exitCode: r.exitCode },
    });
  }
  return r;
}

/** Like run, but a non-zero exit is a result, not an error. A missing program still throws. */
export async function tryRun(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const sub = execa(cmd, args, {
    reject: false,
    all: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
    ...(opts.env ? { env: opts.env } : {}),
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    lines: false,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (opts.onLine) {
    const emit = (chunk: Buffer) => chunk.toString('utf8').split('\n').filter(Boolean).forEach((l) => opts.onLine!(l));
    sub.stdout?.on('data', emit);
    sub.stderr?.on('data', emit);
  }
  const r = await sub;
  if (r.failed && r.exitCode === undefined) {
    const code = (r.cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT') {
      throw new CoiError(ErrorCodes.COMMAND_FAILED, `${cmd} is not installed`, { details: { cmd } });
    }
    if (r.timedOut) throw new CoiError(ErrorCodes.TIMEOUT, `${cmd} did not finish within ${opts.timeoutMs} ms`);
    if (r.isCanceled) throw new CoiError(ErrorCodes.CANCELLED, `${cmd} was cancelled`);
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `${cmd} failed: ${r.shortMessage}`);
  }
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
}

export async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin', '/usr/libexec/incus'])) {
    const p = `${dir}/${cmd}`;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}
