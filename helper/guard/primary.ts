/**
 * One guard per host does the host-wide duties (reaping ended sandboxes,
 * deadlines, network rules): the one holding /run/coi/guard.lock. Another
 * guard (a test's, on a private socket) only serves and relays, so two guards
 * never race each other over the same containers.
 */
import { acquireLock, Lock } from '../sandbox/lock';

export const PRIMARY_LOCK_DIR = '/run/coi';

export async function tryBecomePrimary(dir = PRIMARY_LOCK_DIR): Promise<Lock | undefined> {
  try {
    return await acquireLock(dir, 'guard', 0);
  } catch {
    return undefined;
  }
}
