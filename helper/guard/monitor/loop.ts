/**
 * One monitored sandbox: collect, detect, fold duplicates, respond, record.
 *
 * - Every `intervalMs` (250 ms) a full poll runs every detector against the
 *   previous polls (rates, counts, windows).
 * - On an exec in the container (the exec watcher) a peek reads the new
 *   process and its ancestors at once, and again shortly after (a reverse
 *   shell connects after its exec), for the detectors that judge a process by
 *   itself. Peeks are coalesced (`peekGapMs`).
 * - Responses, containment first: HIGH writes FROZEN to the cgroup freezer
 *   then and there (synchronously, before anything else), CRITICAL too; only
 *   then are the records appended (fsync'd) and pushed, and Incus brought in
 *   line (freeze; or force stop, forensic copy, delete). A guard killed between
 *   the freeze and the fsync leaves a frozen container whose evidence is still
 *   in place: the next guard sees it again and writes the line then.
 * - INFO is logged, WARNING logged and alerted (pushed), HIGH paused,
 *   CRITICAL killed — each as the policy allows (auto_pause_on_high,
 *   auto_kill_on_critical; CRITICAL without kill pauses).
 *
 * All host effects come in through `LoopDeps`, so the loop is tested with
 * fakes; the supervisor wires the real collector, freezer and Incus.
 */
import { randomUUID } from 'node:crypto';
import { CoiError, ErrorCodes, toCoiError } from '../../errors';
import type { FreezeResult } from '../../host/freezer';
import type { Log } from '../../log';
import { AuditAction, AuditRecord, auditRecord } from './audit';
import { Deduplicator } from './dedup';
import { DEFAULT_DNS_OPTIONS } from './detectors/dns-tunnel';
import { ALL_DETECTORS, INSTANT_DETECTORS, processStormDetector, runDetectors } from './detectors';
import type { DnsQuery, KernelActivity, NetworkPacket, NetworkPolicyContext, Severity, ThreatEvent } from './detectors/types';
import { elapsedMs, Snapshot } from './model';
import type { MonitorPolicy } from './policy';
import type { KillOutcome } from './responder';
import type { TraceEvent } from './trace';
import { PidOwner, TraceMembers } from './trace-members';

export type LoopState = 'watching' | 'waiting' | 'frozen' | 'killing' | 'killed' | 'stopped';

export interface LoopCollector {
  collect(): Snapshot;
  peek(pids: readonly number[]): Snapshot;
  reset(): void;
  readonly stats: { polls: number; peeks: number; lastDurationMs: number };
}

export interface AuditSink {
  append(r: AuditRecord): Promise<void>;
}

export interface LoopDeps {
  container: string;
  policy: MonitorPolicy;
  collector: LoopCollector;
  /** Writes the freezer now (synchronous). */
  freeze: () => FreezeResult;
  /** Whether the cgroup is frozen now (undefined: no cgroup). */
  isFrozen: () => boolean | undefined;
  incusFreeze: () => Promise<void>;
  /** Whether Incus is stopping or deleting the container now (a thaw that is part of its end). */
  stopping?: () => Promise<boolean>;
  kill: () => Promise<KillOutcome>;
  audit: AuditSink;
  /** Pushes a record to subscribers (the guard's `threat` topic). */
  publish: (r: AuditRecord) => void;
  /** Called once the loop is over (killed, or stopped). */
  onEnded?: (state: LoopState) => void;
  /** After each full poll: the container's pids (the kernel trace follows them and what they fork). */
  track?: (pids: number[]) => void;
  /** Whose a live pid is now (its cgroup): a trace event of a pid not known from polls or forks is checked so. */
  ownerOf?: (pid: number) => PidOwner;
  log: Log;
  network?: NetworkPolicyContext;
  intervalMs?: number;
  peekGapMs?: number;
  /** Delays of the follow-up peeks after an exec. */
  peekFollowUpsMs?: number[];
  newId?: () => string;
  guardPid?: number;
}

const MAX_RECENT = 50;
/** Older names are let go: the detector looks no further back. */
const DNS_WINDOW_MS = DEFAULT_DNS_OPTIONS.windowMs;
const DNS_JUDGE_EVERY_MS = 1_000;

export class MonitorLoop {
  private stateValue: LoopState = 'waiting';
  /** A thaw seen while frozen is being checked against Incus's operations. */
  private thawCheck: Promise<void> | undefined;
  /** Until then, a thaw is the container's stop under way: nothing to watch or freeze. */
  private stopSeenUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly dedup = new Deduplicator();
  private prev: Snapshot | undefined;
  private history: Snapshot[] = [];
  private packets: NetworkPacket[] = [];
  /** The names this sandbox asked its resolver for within the DNS detector's window. */
  private dnsQueries: DnsQuery[] = [];
  /** New names since the last poll: the window is judged again only then. */
  private dnsDirty = false;
  private dnsJudgedAt = 0;
  private readonly recentRecords: AuditRecord[] = [];
  private readonly pendingAppends = new Set<Promise<void>>();
  private pendingPeek = new Set<number>();
  private pendingActivity: KernelActivity[] = [];
  /** From the kernel's fork and exec events: the parent and program of processes that may be gone. */
  private readonly parents = new Map<number, number>();
  private readonly programs = new Map<number, string>();
  private readonly members: TraceMembers;
  /** Trace events of processes that are not the container's (see TraceMembers). */
  private foreignEvents = 0;
  private peekTimer: NodeJS.Timeout | undefined;
  private lastPeekAt = 0;
  private readonly followUps: NodeJS.Timeout[] = [];
  private misses = 0;
  readonly startedAt = new Date();
  private readonly intervalMs: number;
  private readonly peekGapMs: number;

  constructor(private readonly d: LoopDeps) {
    this.intervalMs = d.intervalMs ?? 250;
    this.peekGapMs = d.peekGapMs ?? 20;
    this.members = new TraceMembers(d.ownerOf ?? (() => 'gone'));
  }

  get state(): LoopState {
    return this.stateValue;
  }

  get container(): string {
    return this.d.container;
  }

  get policy(): MonitorPolicy {
    return this.d.policy;
  }

  /** The latest full snapshot (for `coi monitor`). */
  get lastSnapshot(): Snapshot | undefined {
    return this.prev;
  }

  get stats(): { polls: number; peeks: number; lastDurationMs: number } {
    const s = this.d.collector.stats;
    return { polls: s.polls, peeks: s.peeks, lastDurationMs: s.lastDurationMs };
  }

  get recent(): readonly AuditRecord[] {
    return this.recentRecords;
  }

  /** Begins polling. `note` goes into the first (INFO) line: started, or picked up again. */
  start(opts: { frozen?: boolean; note?: string } = {}): void {
    if (opts.frozen) this.stateValue = 'frozen';
    this.record(
      this.info('Monitoring started', `The guard${this.d.guardPid ? ` (pid ${this.d.guardPid})` : ''} watches ${this.d.container}${opts.note ? `: ${opts.note}` : ''}.`, 'monitor/started', {
        pause: this.d.policy.pauseOnHigh,
        kill: this.d.policy.killOnCritical,
        forensics: this.d.policy.forensicsOnKill,
        intervalMs: this.intervalMs,
      }),
      'logged',
    );
    this.schedule(0);
  }

  /** Ends the loop (the container stopped or was deleted, or the guard is stopping). */
  async stop(reason: string): Promise<void> {
    if (this.stateValue === 'stopped' || this.stateValue === 'killed') return this.flush();
    const killing = this.stateValue === 'killing';
    this.clearTimers();
    if (!killing) {
      this.stateValue = 'stopped';
      this.record(this.info('Monitoring stopped', `No longer watching ${this.d.container}: ${reason}.`, 'monitor/stopped'), 'logged');
      this.d.onEnded?.('stopped');
    }
    await this.flush();
  }

  /** Waits for every record handed to the audit log so far. */
  async flush(): Promise<void> {
    while (this.pendingAppends.size) await Promise.allSettled([...this.pendingAppends]);
  }

  /** Incus says paused (by a person, or our own freeze coming back as an event). */
  markFrozen(): void {
    if (this.stateValue === 'watching' || this.stateValue === 'waiting') this.stateValue = 'frozen';
  }

  /** The container restarted: nothing known about its processes holds any more. */
  restarted(): void {
    this.d.collector.reset();
    this.members.reset();
    this.prev = undefined;
    this.history = [];
    this.dnsQueries = [];
    if (this.stateValue === 'frozen') this.stateValue = 'watching';
  }

  onPacket(p: NetworkPacket): void {
    if (this.packets.length < 10_000) this.packets.push(p);
  }

  /** A DNS query this sandbox sent (from the resolver's log on the host). */
  onDnsQuery(q: DnsQuery): void {
    if (this.stateValue !== 'watching' && this.stateValue !== 'waiting') return;
    this.dnsQueries.push(q);
    // Bounded: a flood is judged by its last 5000 names (the rate rule needs no more).
    if (this.dnsQueries.length > 6_000) this.dnsQueries = this.dnsQueries.slice(-5_000);
    this.dnsDirty = true;
  }

  /** An event of the container's kernel trace. */
  onTrace(e: TraceEvent): void {
    if (e.kind === 'lost') return this.members.lost();
    if (e.kind === 'fork' ? !this.members.fork(e.pid, e.child) : !this.members.counts(e.pid)) {
      // Logged at 1, 10, 100…: enough to see it happens, never a flood.
      if (Number.isInteger(Math.log10(++this.foreignEvents))) this.d.log.debug(`monitor ${this.d.container}: ${this.foreignEvents} trace event(s) of other processes ignored (last: ${e.kind} of pid ${e.pid}, ${e.comm})`);
      return;
    }
    switch (e.kind) {
      case 'fork':
        remember(this.parents, e.child, e.pid);
        break;
      case 'exec':
        remember(this.programs, e.pid, e.filename);
        this.onExec(e.pid);
        break;
      case 'environ-open': {
        if (this.stateValue !== 'watching' || this.pendingActivity.length > 1000) return;
        const ppid = this.parents.get(e.pid);
        const exe = this.programs.get(e.pid);
        this.pendingActivity.push({ kind: 'environ-open', pid: e.pid, comm: e.comm, time: Date.now(), ...(ppid !== undefined ? { ppid } : {}), ...(exe ? { exe } : {}) });
        this.pendingPeek.add(e.pid);
        if (ppid !== undefined) this.pendingPeek.add(ppid);
        this.schedulePeek();
        break;
      }
    }
  }

  /** A process of this container just exec'd: look at it now, and again shortly. */
  onExec(pid: number): void {
    if (this.stateValue !== 'watching') return;
    this.pendingPeek.add(pid);
    this.schedulePeek();
    for (const ms of this.d.peekFollowUpsMs ?? [40, 120]) {
      const t = setTimeout(() => {
        this.followUps.splice(this.followUps.indexOf(t), 1);
        this.pendingPeek.add(pid);
        this.schedulePeek();
      }, ms);
      t.unref();
      this.followUps.push(t);
    }
  }

  private schedulePeek(): void {
    if (this.peekTimer) return;
    // Kernel activity is rare and already happened: no coalescing delay for it.
    const wait = this.pendingActivity.length ? 0 : Math.max(0, this.lastPeekAt + this.peekGapMs - Date.now());
    // Now, not on a later turn of the event loop: the process may live only milliseconds.
    if (wait === 0) return this.peek();
    this.peekTimer = setTimeout(() => {
      this.peekTimer = undefined;
      this.peek();
    }, wait);
    this.peekTimer.unref();
  }

  private peek(): void {
    try {
      this.peekNow();
    } catch (e) {
      this.d.log.error(`monitor ${this.d.container}: peek failed: ${toCoiError(e).stack ?? toCoiError(e).message}`);
    }
  }

  private peekNow(): void {
    if (this.stateValue !== 'watching' || (this.pendingPeek.size === 0 && this.pendingActivity.length === 0)) return;
    const pids = [...this.pendingPeek];
    this.pendingPeek.clear();
    const activity = this.pendingActivity;
    this.pendingActivity = [];
    this.lastPeekAt = Date.now();
    let snap: Snapshot;
    try {
      snap = this.d.collector.peek(pids);
    } catch (e) {
      this.d.log.debug(`peek at ${this.d.container} failed: ${toCoiError(e).message}`);
      return;
    }
    if (snap.processes.size === 0 && activity.length === 0) return;
    const events = runDetectors(
      snap,
      undefined,
      { thresholds: this.d.policy.thresholds, ...(activity.length ? { activity } : {}), ...(this.d.newId ? { newId: this.d.newId } : {}) },
      INSTANT_DETECTORS,
    );
    this.handle(events, snap);
  }

  private schedule(ms: number): void {
    if (this.stateValue === 'killing' || this.stateValue === 'killed' || this.stateValue === 'stopped') return;
    // The guard's socket keeps the process alive; the loop alone does not.
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick();
    }, ms);
    this.timer.unref();
  }

  /** One full poll. Synchronous up to the containment; the rest runs on. */
  tick(): void {
    const t0 = Date.now();
    try {
      this.poll();
    } catch (e) {
      // A bug in one poll must not end the watch.
      this.d.log.error(`monitor ${this.d.container}: poll failed: ${toCoiError(e).stack ?? toCoiError(e).message}`);
    }
    this.schedule(Math.max(10, this.intervalMs - (Date.now() - t0)));
  }

  private poll(): void {
    let snap: Snapshot;
    try {
      snap = this.d.collector.collect();
    } catch (e) {
      if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) {
        // Not running (yet, or any more): the lifecycle events end the loop.
        if (this.stateValue === 'watching') this.stateValue = 'waiting';
        if (++this.misses === 1) this.d.log.debug(`${this.d.container}: ${e.message}`);
      } else this.d.log.warn(`collecting ${this.d.container} failed: ${toCoiError(e).message}`);
      return;
    }
    this.misses = 0;
    if (this.stateValue === 'waiting') this.stateValue = 'watching';
    if (this.stateValue === 'frozen' && this.d.isFrozen() === false) {
      // Thawed: by `coi resume` (watch again), or by a stop under way (Incus thaws a frozen container
      // after its SIGKILL; freezing it again here would leave that stop waiting on frozen tasks for good).
      if (!this.d.stopping) this.stateValue = 'watching';
      else {
        if (Date.now() < this.stopSeenUntil) return;
        if (!this.thawCheck) {
          this.thawCheck = this.d
            .stopping()
            .catch(() => false)
            .then((stopping) => {
              if (stopping) this.stopSeenUntil = Date.now() + 60_000;
              else if (this.stateValue === 'frozen') this.stateValue = 'watching';
            })
            .finally(() => (this.thawCheck = undefined));
        }
        return;
      }
    }
    // A fork bomb takes the host down with it: its check, cheap, goes first and acts at once.
    const storm = runDetectors(snap, this.prev, { thresholds: this.d.policy.thresholds, history: this.history, ...(this.d.newId ? { newId: this.d.newId } : {}) }, [processStormDetector]);
    if (storm.length) this.handle(storm, snap);
    const packets = this.packets;
    this.packets = [];
    let dnsQueries: DnsQuery[] | undefined;
    // At most once a second: the whole window is looked at each time, and a tunnel takes seconds anyway.
    if (this.dnsDirty && snap.takenAt - this.dnsJudgedAt >= DNS_JUDGE_EVERY_MS) {
      this.dnsDirty = false;
      this.dnsJudgedAt = snap.takenAt;
      const since = snap.takenAt - DNS_WINDOW_MS;
      this.dnsQueries = this.dnsQueries.filter((q) => q.time >= since);
      dnsQueries = this.dnsQueries;
    }
    const events = runDetectors(snap, this.prev, {
      thresholds: this.d.policy.thresholds,
      history: this.history,
      ...(packets.length ? { packets } : {}),
      ...(dnsQueries?.length ? { dnsQueries } : {}),
      ...(this.d.network ? { network: this.d.network } : {}),
      ...(this.d.newId ? { newId: this.d.newId } : {}),
    }, ALL_DETECTORS.filter((d) => d !== processStormDetector));
    if (this.prev) this.history.push(this.prev);
    const keepMs = (Math.max(this.d.policy.thresholds.pollIntervalSec, this.d.policy.thresholds.rateWindowSec) + 1) * 1000;
    this.history = this.history.filter((h) => elapsedMs(h, snap) <= keepMs).slice(-64);
    this.prev = snap;
    const pids = [...snap.processes.keys()];
    this.members.polledNow(pids);
    this.d.track?.(pids);
    this.handle(events, snap);
  }

  private actionFor(level: Severity): AuditAction {
    const p = this.d.policy;
    const frozen = this.stateValue === 'frozen';
    if (level === 'critical') {
      if (p.killOnCritical) return 'killed';
      if (p.pauseOnHigh) return frozen ? 'logged (already paused)' : 'paused';
      return 'alerted';
    }
    if (level === 'high') {
      if (!p.pauseOnHigh) return 'alerted';
      return frozen ? 'logged (already paused)' : 'paused';
    }
    return level === 'warning' ? 'alerted' : 'logged';
  }

  private handle(events: ThreatEvent[], snap: Snapshot): void {
    if (events.length === 0 || this.stateValue === 'killing' || this.stateValue === 'killed' || this.stateValue === 'stopped') return;
    const { report } = this.dedup.filter(events, Date.now());
    if (report.length === 0) return;
    const plans = report.map((r) => ({ ...r, action: this.actionFor(r.event.level) }));
    const kill = plans.some((p) => p.action === 'killed');
    const pause = plans.some((p) => p.action === 'paused');

    // Containment first: nothing below runs before the freezer is written.
    let response: AuditRecord['response'];
    if (kill || pause) {
      const r = this.d.freeze();
      const frozenAt = Date.now();
      response = { detectedAt: new Date(snap.takenAt).toISOString(), frozenAt: new Date(frozenAt).toISOString(), containMs: frozenAt - snap.takenAt };
      if (!r.ok) response.error = `freezer: ${r.error ?? 'failed'}`;
      this.stateValue = kill ? 'killing' : 'frozen';
      if (kill) this.clearTimers();
      // Judged and contained: after a resume the same names must not freeze it again.
      this.dnsQueries = [];
      this.dnsDirty = false;
    }

    for (const p of plans) {
      const rec = auditRecord(p.event, this.d.container, p.action, p.folded);
      if (response && (p.action === 'killed' || p.action === 'paused')) rec.response = response;
      this.record(rec, p.action);
    }

    if (kill) void this.runKill();
    else if (pause) {
      void this.d.incusFreeze().catch((e: unknown) => {
        const msg = toCoiError(e).message;
        this.d.log.warn(`${this.d.container}: Incus freeze failed (the cgroup stays frozen): ${msg}`);
        this.record(this.info('Incus did not take the freeze', `The container is frozen through its cgroup, but Incus refused to record it (${msg}); coi resume still thaws it.`, 'monitor/incus-freeze-failed'), 'pause failed');
      });
    }
  }

  private async runKill(): Promise<void> {
    const t0 = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        const out = await this.d.kill();
        this.stateValue = 'killed';
        const extra = out.forensics ? `; forensic copy kept as ${out.forensics}` : out.forensicsError ? `; the forensic copy failed: ${out.forensicsError}` : '';
        this.record(
          this.info('Sandbox killed', `${this.d.container} was force-stopped ${out.stoppedMs} ms after the kill began and deleted${extra}.`, 'monitor/killed', {
            stoppedMs: out.stoppedMs,
            totalMs: Date.now() - t0,
            ...(out.forensics ? { forensics: out.forensics } : {}),
          }),
          'killed',
        );
        break;
      } catch (e) {
        const msg = toCoiError(e).message;
        this.d.log.error(`${this.d.container}: kill attempt ${attempt} failed: ${msg}`);
        if (attempt === 1 || attempt % 10 === 0) {
          const rec = this.info('Kill failed', `Stopping ${this.d.container} failed (attempt ${attempt}): ${msg}. It stays frozen; retrying.`, 'monitor/kill-failed');
          rec.level = 'critical';
          this.record(rec, 'kill failed');
        }
        if (attempt >= 60) break;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * attempt)));
      }
    }
    this.d.onEnded?.(this.stateValue);
  }

  private info(title: string, description: string, rule: string, extra: Record<string, unknown> = {}): AuditRecord {
    const now = new Date().toISOString();
    return {
      id: (this.d.newId ?? randomUUID)(),
      timestamp: now,
      level: 'info',
      category: 'monitor',
      title,
      description,
      evidence: { rule, key: `${rule}:${now}`, ...extra },
      action: 'logged',
      container: this.d.container,
      detector: 'monitor',
    };
  }

  private record(rec: AuditRecord, action: AuditAction | string): void {
    rec.action = action;
    this.recentRecords.push(rec);
    if (this.recentRecords.length > MAX_RECENT) this.recentRecords.shift();
    // Pushed at once; the disk write runs alongside (fsync'd before it resolves).
    try {
      this.d.publish(rec);
    } catch (e) {
      this.d.log.warn(`publishing a threat failed: ${toCoiError(e).message}`);
    }
    const p = this.d.audit.append(rec).catch((e: unknown) => {
      this.d.log.error(`AUDIT LINE NOT WRITTEN for ${this.d.container} (${rec.level} ${rec.title}): ${toCoiError(e).message}; the record: ${JSON.stringify(rec).slice(0, 4000)}`);
    });
    this.pendingAppends.add(p);
    void p.finally(() => this.pendingAppends.delete(p));
  }

  private clearTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.peekTimer) clearTimeout(this.peekTimer);
    this.peekTimer = undefined;
    for (const t of this.followUps.splice(0)) clearTimeout(t);
  }
}

/** A bounded map: the oldest entries go first. */
function remember<V>(m: Map<number, V>, k: number, v: V, max = 4096): void {
  m.delete(k);
  m.set(k, v);
  if (m.size > max) {
    const first = m.keys().next().value;
    if (first !== undefined) m.delete(first);
  }
}
