/**
 * Starting the guard in the background where no service manager does it
 * (containers, CI, hosts without systemd): a detached `coi guard run` whose
 * output goes to a log file, then a wait until it answers on its socket.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { CoiError, ErrorCodes } from '../errors';
import { GuardClient } from './client';
import { COI_BUILD } from '../version';
import { DEFAULT_GUARD_LOG, guardSocketPath } from './paths';

export interface GuardStartResult {
  alreadyRunning: boolean;
  pid: number;
  version: string;
  socketPath: string;
  logFile: string;
  /** Set when a guard of another build was stopped to start this one. */
  replaced?: { pid: number; build: string };
}

export async function startGuardDaemon(env: NodeJS.ProcessEnv, script = process.argv[1]): Promise<GuardStartResult> {
  const socketPath = guardSocketPath(env);
  const logFile = env.COI_GUARD_LOG || DEFAULT_GUARD_LOG;
  const probe = new GuardClient({ socketPath });
  const already = await probe.connect({ timeoutMs: 1_000 }).then(() => probe.info(), () => undefined);
  let replaced: GuardStartResult['replaced'];
  if (already) {
    const mine = COI_BUILD;
    // A guard of another build (an update, a rebuild, or one too old to say) would keep enforcing the old code: hand over to ours.
    // Sandboxes keep their rules meanwhile (they live in the kernel) and the new guard reconciles them.
    if (guardHandover(already.guard.build, mine) === 'keep') {
      probe.close();
      return { alreadyRunning: true, pid: already.guard.pid, version: already.guard.version, socketPath, logFile };
    }
    replaced = { pid: already.guard.pid, build: already.guard.build ?? "older than build ids" };
    await probe.shutdown();
    probe.close();
    const deadline = Date.now() + 10_000;
    while (isAlive(already.guard.pid)) {
      if (Date.now() > deadline) throw new CoiError(ErrorCodes.TIMEOUT, `the guard of an older build (pid ${already.guard.pid}) did not stop within 10 s`, { remedy: { title: 'Stop it, then run set-up again', shell: `sudo kill ${already.guard.pid}` } });
      await new Promise((r) => setTimeout(r, 50));
    }
  } else probe.close();
  if (!script) throw new CoiError(ErrorCodes.INTERNAL, 'cannot tell which script to start the guard from');
  const fd = openSync(logFile, 'a', 0o640);
  const child = spawn(process.execPath, [script, 'guard', 'run'], { detached: true, stdio: ['ignore', fd, fd], env });
  child.unref();
  const client = new GuardClient({ socketPath, reconnect: true });
  client.connect({ timeoutMs: 1_000 }).catch(() => undefined);
  try {
    await client.waitConnected(15_000);
    const info = await client.info();
    return { alreadyRunning: false, pid: info.guard.pid, version: info.guard.version, socketPath, logFile, ...(replaced ? { replaced } : {}) };
  } catch {
    throw new CoiError(ErrorCodes.SETUP_FAILED, `the guard did not come up within 15 s; see ${logFile}`);
  } finally {
    client.close();
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether set-up keeps a running guard or replaces it with its own build (unknown own build: keep). */
export function guardHandover(running: string | undefined, mine: string | undefined): 'keep' | 'replace' {
  return !mine || running === mine ? 'keep' : 'replace';
}
