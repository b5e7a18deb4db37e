/**
 * Deletes sandboxes whose session is over, from the guard, so it happens even
 * when no coi process and no editor is left: an ephemeral sandbox that stopped
 * (the tool exited, or it was powered off from inside), and a `coi run`
 * sandbox whose coi process died.
 */
import { toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { lifecycleOf } from '../incus/events';
import type { RawEvent } from '../incus/types';
import type { Log } from '../log';
import { SandboxInfo, sandboxFromInstance } from '../sandbox/labels';
import { pidAlive } from '../sandbox/lock';

export function reapReason(sb: SandboxInfo, launcherAlive: (pid: number) => boolean): string | undefined {
  if (sb.phase !== 'ready') return undefined; // a launch in progress owns it
  if (sb.state === 'stopped' && !sb.persistent) return 'its session ended';
  if (sb.kind === 'run' && sb.launcherPid !== undefined && !launcherAlive(sb.launcherPid)) return 'the coi run that owned it is gone';
  return undefined;
}

export class Reaper {
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly incus: IncusClient,
    private readonly log: Log,
    private readonly alive: (pid: number) => boolean = pidAlive,
    /** Sandboxes someone else is ending (the monitor's kill, forensics first): left alone. */
    private readonly held: (name: string) => boolean = () => false,
  ) {}

  /** Checks one instance after a lifecycle event about it. */
  onEvent(e: RawEvent): void {
    const lc = lifecycleOf(e);
    if (!lc || !/^instance-(stopped|shutdown)$/.test(lc.action)) return;
    const m = /^\/1\.0\/instances\/([^/?]+)/.exec(lc.source);
    if (m) void this.check(decodeURIComponent(m[1]!));
  }

  /** On start, and after losing events: look at everything once. */
  async sweep(): Promise<void> {
    const all = await this.incus.listInstances().catch(() => []);
    for (const i of all) {
      const sb = sandboxFromInstance(i);
      if (sb) await this.reapIf(sb);
    }
  }

  private async check(name: string): Promise<void> {
    const inst = await this.incus.getInstance(name).catch(() => undefined);
    const sb = inst && sandboxFromInstance(inst);
    if (sb) await this.reapIf(sb);
  }

  private async reapIf(sb: SandboxInfo): Promise<void> {
    const why = reapReason(sb, this.alive);
    if (!why || this.inFlight.has(sb.name) || this.held(sb.name)) return;
    this.inFlight.add(sb.name);
    try {
      await this.incus.deleteInstance(sb.name, { force: true });
      this.log.info(`deleted ${sb.name}: ${why}`);
    } catch (e) {
      this.log.warn(`could not delete ${sb.name} (${why}): ${toCoiError(e).message}`);
    } finally {
      this.inFlight.delete(sb.name);
    }
  }
}
