/**
 * Starting the guard in the background where no service manager does it
 * (containers, CI, hosts without systemd): a detached `coi guard run` whose
 * output goes to a log file, then a wait until it answers on its socket.
 */
import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { CoiError, ErrorCodes } from '../errors';
import { GuardClient } from './client';
import { DEFAULT_GUARD_LOG, guardSocketPath } from './paths';

export interface GuardStartResult {
  alreadyRunning: boolean;
  pid: number;
  version: string;
  socketPath: string;
  logFile: string;
}

export async function startGuardDaemon(env: NodeJS.ProcessEnv, script = process.argv[1]): Promise<GuardStartResult> {
  const socketPath = guardSocketPath(env);
  const logFile = env.COI_GUARD_LOG || DEFAULT_GUARD_LOG;
  const probe = new GuardClient({ socketPath });
  const already = await probe.connect({ timeoutMs: 1_000 }).then(() => probe.info(), () => undefined);
  probe.close();
  if (already) return { alreadyRunning: true, pid: already.guard.pid, version: already.guard.version, socketPath, logFile };
  if (!script) throw new CoiError(ErrorCodes.INTERNAL, 'cannot tell which script to start the guard from');
  const fd = openSync(logFile, 'a', 0o640);
  const child = spawn(process.execPath, [script, 'guard', 'run'], { detached: true, stdio: ['ignore', fd, fd], env });
  child.unref();
  const client = new GuardClient({ socketPath, reconnect: true });
  client.connect({ timeoutMs: 1_000 }).catch(() => undefined);
  try {
    await client.waitConnected(15_000);
    const info = await client.info();
    return { alreadyRunning: false, pid: info.guard.pid, version: info.guard.version, socketPath, logFile };
  } catch {
    throw new CoiError(ErrorCodes.SETUP_FAILED, `the guard did not come up within 15 s; see ${logFile}`);
  } finally {
    client.close();
  }
}
