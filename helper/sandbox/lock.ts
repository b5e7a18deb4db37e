/**
 * One launch at a time per workspace, across processes: an exclusive lock
 * file holding the owner's pid. A lock whose owner died (coi killed mid-launch)
 * is taken over, so a crash never blocks the next launch.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../errors';

export interface Lock {
  release(): Promise<void>;
}

export async function acquireLock(dir: string, key: string, timeoutMs = 120_000): Promise<Lock> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${key}.lock`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await fs.open(file, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return { release: () => fs.rm(file, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
    if (!owner || !pidAlive(owner)) {
      // The owner is gone: remove its lock. If another waiter wins the race, we loop.
      await fs.rm(file, { force: true });
      continue;
    }
    if (Date.now() >= deadline) {
      throw new CoiError(ErrorCodes.TIMEOUT, `another coi (pid ${owner}) is launching a sandbox for this workspace; waited ${timeoutMs / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
