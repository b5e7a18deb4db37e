/**
 * The build watchdog: a small detached process started with a build, which
 * waits for the builder to die and then removes what the build left (its
 * temporary container, an image it imported but never aliased, its scratch
 * folder). A build that ends by itself stops its watchdog first. This is what
 * makes `kill -9` of `coi build` (or of the editor's helper) leave nothing.
 */
import { spawn } from 'node:child_process';
import type { IncusClient } from '../incus/client';
import { cleanupBuild, pidAliveNotZombie } from './builder';

export const WATCHDOG_COMMAND = '__build-watchdog';

/** Starts the watchdog from the same bundle and Node as this process. */
export function spawnWatchdog(entry: string, buildId: string, workDir: string, env: NodeJS.ProcessEnv): { stop(): void } {
  const child = spawn(process.execPath, [entry, WATCHDOG_COMMAND, String(process.pid), buildId, workDir], {
    detached: true,
    stdio: 'ignore',
    env,
  });
  child.on('error', () => undefined);
  child.unref();
  let stopped = false;
  return {
    stop() {
      if (stopped || child.pid === undefined) return;
      stopped = true;
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
    },
  };
}

/** The watchdog's body: poll the builder, then clean up after it. */
export async function runWatchdog(incus: IncusClient, builderPid: number, buildId: string, workDir: string, pollMs = 200): Promise<string[]> {
  while (pidAliveNotZombie(builderPid)) await new Promise((r) => setTimeout(r, pollMs));
  return cleanupBuild(incus, buildId, workDir);
}
