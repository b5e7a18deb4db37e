/**
 * max_duration, enforced by the guard so it holds when every editor and coi
 * process is gone. A sandbox's start time is read from its init process
 * (/proc/<pid>/stat start ticks + the boot time), not remembered: a restarted
 * guard computes the same deadline. The user is warned before the end (a guard
 * event and a message in the agent's tmux), then the sandbox is stopped
 * gracefully, and by force after a grace period; the reaper then deletes an
 * ephemeral one as for any ended session.
 */
import { readFileSync } from 'node:fs';
import { toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { lifecycleOf } from '../incus/events';
import type { RawEvent } from '../incus/types';
import type { Log } from '../log';
import { LABELS, parseRuntimeLabel, RuntimeLabel } from '../sandbox/labels';
import { tmuxSession } from '../sandbox/naming';

/** USER_HZ: the unit of /proc/<pid>/stat times; 100 on every Linux architecture we run on. */
const USER_HZ = 100;
export const GRACE_MS = 10_000;

/** Field 22 (starttime, in clock ticks since boot) of /proc/<pid>/stat; comm may contain spaces and parentheses. */
export function startTicksOf(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const v = Number(rest[19]);
  return Number.isFinite(v) ? v : undefined;
}

export function bootTimeMs(procStat: string): number | undefined {
  const m = /^btime (\d+)$/m.exec(procStat);
  return m ? Number(m[1]) * 1000 : undefined;
}

export interface DeadlinePlan {
  warnAtMs: number;
  stopAtMs: number;
}

/** Warn a minute before the end, or a quarter of the duration before it for short ones. */
export function planDeadline(startedAtMs: number, rt: RuntimeLabel): DeadlinePlan {
  const stopAtMs = startedAtMs + rt.maxDurationMs;
  return { stopAtMs, warnAtMs: stopAtMs - Math.min(60_000, Math.floor(rt.maxDurationMs / 4)) };
}

export type DeadlineNotice = { kind: 'limit-warning' | 'limit-stopped'; message: string; container: string };

interface Tracked {
  plan: DeadlinePlan;
  timers: NodeJS.Timeout[];
}

export class DeadlineKeeper {
  private readonly tracked = new Map<string, Tracked>();
  private syncing: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly incus: IncusClient,
    private readonly log: Log,
    private readonly notify: (n: DeadlineNotice) => void,
    private readonly procRoot = '/proc',
  ) {}

  onEvent(e: RawEvent): void {
    const lc = lifecycleOf(e);
    if (lc && /^instance-(started|stopped|shutdown|deleted|restarted|updated)$/.test(lc.action)) void this.sync();
  }

  /** Re-reads every running sandbox with a max_duration and (re)schedules its timers. */
  sync(): Promise<void> {
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = this.doSync()
      .catch((e: unknown) => this.log.warn(`max_duration sync failed: ${toCoiError(e).message}`))
      .finally(() => {
        this.syncing = undefined;
        if (this.again) {
          this.again = false;
          void this.sync();
        }
      });
    return this.syncing;
  }

  stop(): void {
    for (const t of this.tracked.values()) t.timers.forEach(clearTimeout);
    this.tracked.clear();
  }

  private async doSync(): Promise<void> {
    const boot = bootTimeMs(readFileSync(`${this.procRoot}/stat`, 'utf8'));
    const seen = new Set<string>();
    // Without state (much cheaper for Incus: this runs on every instance event, a pool take's among
    // them); the state of the few sandboxes with a max_duration is read after.
    for (const i of await this.incus.listInstances({ recursion: 1 })) {
      const rt = parseRuntimeLabel(i.config?.[LABELS.runtime]);
      if (i.config?.[LABELS.managed] !== 'true' || !rt || i.status !== 'Running' || boot === undefined) continue;
      const pid = (await this.incus.getState(i.name).catch(() => undefined))?.pid;
      if (!pid) continue;
      let ticks: number | undefined;
      try {
        ticks = startTicksOf(readFileSync(`${this.procRoot}/${pid}/stat`, 'utf8'));
      } catch {
        continue;
      }
      if (ticks === undefined) continue;
      // A warm pool member booted before it became this sandbox: its time starts when it was taken.
      const taken = i.config?.['user.coi.pool'] ? Date.parse(i.config?.[LABELS.createdAt] ?? '') : NaN;
      const plan = planDeadline(Math.max(boot + (ticks * 1000) / USER_HZ, Number.isFinite(taken) ? taken : 0), rt);
      seen.add(i.name);
      const cur = this.tracked.get(i.name);
      if (cur && cur.plan.stopAtMs === plan.stopAtMs) continue;
      cur?.timers.forEach(clearTimeout);
      this.tracked.set(i.name, { plan, timers: this.schedule(i.name, plan, rt) });
      this.log.info(`${i.name}: max_duration ends at ${new Date(plan.stopAtMs).toISOString()}`);
    }
    for (const [name, t] of this.tracked) {
      if (seen.has(name)) continue;
      t.timers.forEach(clearTimeout);
      this.tracked.delete(name);
    }
  }

  private schedule(name: string, plan: DeadlinePlan, rt: RuntimeLabel): NodeJS.Timeout[] {
    const now = Date.now();
    const timers: NodeJS.Timeout[] = [];
    if (plan.warnAtMs > now) timers.push(setTimeout(() => void this.warn(name, plan, rt), plan.warnAtMs - now));
    timers.push(setTimeout(() => void this.expire(name, rt), Math.max(0, plan.stopAtMs - now)));
    return timers;
  }

  private async warn(name: string, plan: DeadlinePlan, rt: RuntimeLabel): Promise<void> {
    const secs = Math.round((plan.stopAtMs - Date.now()) / 1000);
    const message = rt.autoStop ? `${name} reaches its max_duration in ${secs} s and will be stopped` : `${name} reaches its max_duration in ${secs} s (auto_stop is off: it keeps running)`;
    this.notify({ kind: 'limit-warning', message, container: name });
    // Tell the agent's user in the terminal too; best effort, the session may be gone.
    await this.incus
      .exec(name, ['tmux', 'display-message', '-d', '15000', '-t', tmuxSession(name), `COI: ${message}`], { user: 1000, group: 1000, env: { HOME: '/home/code' }, timeoutMs: 5_000 })
      .catch(() => undefined);
  }

  private async expire(name: string, rt: RuntimeLabel): Promise<void> {
    this.tracked.delete(name);
    if (!rt.autoStop) {
      this.notify({ kind: 'limit-warning', message: `${name} is past its max_duration (auto_stop is off)`, container: name });
      return;
    }
    this.log.info(`${name}: max_duration reached, stopping it`);
    try {
      if (rt.stopGraceful) {
        await this.incus.setState(name, 'stop', { timeoutSec: GRACE_MS / 1000, timeoutMs: GRACE_MS + 15_000 }).catch(() => this.incus.setState(name, 'stop', { force: true }));
      } else {
        await this.incus.setState(name, 'stop', { force: true });
      }
      this.notify({ kind: 'limit-stopped', message: `${name} was stopped: it reached its max_duration`, container: name });
    } catch (e) {
      this.log.warn(`could not stop ${name} at its max_duration: ${toCoiError(e).message}`);
    }
  }
}
