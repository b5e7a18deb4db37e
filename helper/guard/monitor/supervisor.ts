/**
 * The guard's monitor: one MonitorLoop per running sandbox whose
 * `user.coi.monitor` label enables it, found from Incus — at start (so a
 * restarted guard picks every sandbox up again), on lifecycle events, and
 * after the event stream reconnects. It holds nothing Incus and the audit
 * files do not already hold.
 *
 * Also here: the exec watcher feeding peeks to the loops, the network events
 * (`onPacket`, for the nft log reader), the audit log of each sandbox in its
 * owner's `~/.coi/audit/` (audit-location.ts), and what `monitor/snapshot`
 * answers.
 */
import * as path from 'node:path';
import { toCoiError } from '../../errors';
import { readFreezer, writeFreezer } from '../../host/freezer';
import type { IncusClient } from '../../incus/client';
import { lifecycleOf } from '../../incus/events';
import type { InstanceFull, RawEvent } from '../../incus/types';
import type { Log } from '../../log';
import type { MonitorStatus, ThreatEventWire } from '../../protocol/methods';
import { LABELS } from '../../sandbox/labels';
import { DEFAULT_GUARD_SOCKET } from '../paths';
import { AuditRecord, AuditWriter, pruneAudit } from './audit';
import { auditLocation, AuditLocation, ensureAuditDir, FALLBACK_AUDIT_ROOT } from './audit-location';
import { ProcessCollector } from './collector';
import { runDetectors } from './detectors';
import type { NetworkPacket } from './detectors/types';
import { DnsQueryFeed } from './dns-feed';
import { queryLogOf } from './dns-log';
import { formatEndpoint } from './ip';
import { LoopState, MonitorLoop } from './loop';
import { capArgv, Snapshot } from './model';
import { decodePolicy, MonitorPolicy } from './policy';
import { incusFreeze, incusStopping, killSandbox } from './responder';
import { pidOwner, prepareTracefs, TraceSession } from './trace';
import { toThreatWire } from './wire';

export interface SupervisorOptions {
  incus: IncusClient;
  log: Log;
  publish: (e: ThreatEventWire) => void;
  /** This guard's socket: it watches the sandboxes labelled with it, or unlabelled ones when it is the default. */
  socketPath?: string;
  /** Which sandboxes to watch, by name (tests on a shared host watch only their own). */
  only?: (name: string) => boolean;
  env?: NodeJS.ProcessEnv;
  cgroupRoot?: string;
  procRoot?: string;
  intervalMs?: number;
  /** Follow processes through the kernel's trace events (tracefs). Default true. */
  execEvents?: boolean;
  /** Read the names sandboxes look up from their bridge's dnsmasq log (dns-feed.ts). Default true. */
  dnsNames?: boolean;
}

/** The host's guard empties the shared DNS query log at this size (dns-feed.ts). */
const DNS_LOG_MAX_BYTES = 64 * 1024 * 1024;
const BRIDGE_RECHECK_MS = 60_000;

interface Entry {
  loop: MonitorLoop;
  ownerUid: number;
  auditPath?: string;
  writer?: AuditWriter;
  trace?: TraceSession;
}

export class MonitorSupervisor {
  private readonly loops = new Map<string, Entry>();
  private readonly starting = new Map<string, Promise<void>>();
  private tracefs: string | undefined;
  private traceUnavailable: string | undefined = 'not started';
  private stopped = false;
  private dnsFeed: DnsQueryFeed | undefined;
  /** Source address → the watched sandboxes whose NIC has it (see dns-feed.ts on attribution). */
  private addresses = new Map<string, string[]>();
  /** Bridge → its query log, undefined when it has none, and when that was asked. */
  private readonly bridgeLogs = new Map<string, { at: number; path: Promise<string | undefined> }>();

  constructor(private readonly o: SupervisorOptions) {}

  async start(): Promise<void> {
    if (this.o.execEvents !== false) {
      const r = await prepareTracefs(this.o.log);
      if ('root' in r) {
        this.tracefs = r.root;
        this.traceUnavailable = undefined;
      } else {
        this.traceUnavailable = r.unavailable;
        this.o.log.warn(`monitor: no kernel trace (${r.unavailable}); polling only`);
      }
    } else this.traceUnavailable = 'disabled';
    if (this.o.dnsNames !== false) {
      const hostGuard = (this.o.socketPath ?? DEFAULT_GUARD_SOCKET) === DEFAULT_GUARD_SOCKET;
      this.dnsFeed = new DnsQueryFeed({
        log: this.o.log,
        lookup: (a) => this.addresses.get(a) ?? [],
        refresh: () => this.refreshAddresses(),
        deliver: (c, q) => this.loops.get(c)?.loop.onDnsQuery(q),
        ...(hostGuard ? { truncateAtBytes: DNS_LOG_MAX_BYTES } : {}),
      });
    }
    await this.sweep();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.dnsFeed?.stop();
    await Promise.allSettled([...this.starting.values()]);
    await Promise.allSettled([...this.loops.values()].map((e) => this.end(e.loop.container, 'the guard is stopping')));
  }

  /** True while a kill is in progress: the Reaper must not delete it under us. */
  holds(name: string): boolean {
    return this.loops.get(name)?.loop.state === 'killing';
  }

  /** Looks at every instance: starts what should be watched, ends what should not. */
  async sweep(): Promise<void> {
    let all: InstanceFull[];
    try {
      all = await this.o.incus.listInstances();
    } catch (e) {
      this.o.log.warn(`monitor: cannot list instances: ${toCoiError(e).message}`);
      return;
    }
    const live = new Set<string>();
    for (const inst of all) {
      if (!this.wanted(inst)) continue;
      live.add(inst.name);
      await this.ensure(inst);
    }
    for (const name of [...this.loops.keys()]) if (!live.has(name) && this.loops.get(name)?.loop.state !== 'killing') await this.end(name, 'it is no longer running');
  }

  private wanted(inst: InstanceFull): boolean {
    if (inst.config?.[LABELS.managed] !== 'true') return false;
    if (this.o.only && !this.o.only(inst.name)) return false;
    // One guard per sandbox: the one it was made with (a private test guard, or the host's).
    if ((inst.config[LABELS.guard] || DEFAULT_GUARD_SOCKET) !== (this.o.socketPath ?? DEFAULT_GUARD_SOCKET)) return false;
    if (inst.status !== 'Running' && inst.status !== 'Frozen') return false;
    const d = decodePolicy(inst.config[LABELS.monitor]);
    return d.kind !== 'absent' && d.policy.enabled;
  }

  /** A lifecycle event from Incus. */
  onIncusEvent(e: RawEvent): void {
    const lc = lifecycleOf(e);
    const m = lc && /^\/1\.0\/instances\/([^/?]+)/.exec(lc.source);
    if (!lc || !m || this.stopped) return;
    const name = decodeURIComponent(m[1]!);
    if (this.o.only && !this.o.only(name)) return;
    switch (lc.action) {
      case 'instance-started':
      case 'instance-resumed':
      case 'instance-updated':
        void this.check(name);
        break;
      case 'instance-restarted':
        this.loops.get(name)?.loop.restarted();
        void this.check(name);
        break;
      case 'instance-paused':
        this.loops.get(name)?.loop.markFrozen();
        break;
      case 'instance-stopped':
      case 'instance-shutdown':
      case 'instance-deleted':
        if (this.loops.get(name)?.loop.state !== 'killing') void this.end(name, lc.action === 'instance-deleted' ? 'it was deleted' : 'it stopped');
        break;
      default:
        break;
    }
  }

  /** A packet the firewall logged for a container (from the nft log reader). */
  onPacket(container: string, p: NetworkPacket): void {
    this.loops.get(container)?.loop.onPacket(p);
  }

  private async check(name: string): Promise<void> {
    const inst = await this.o.incus.getInstance(name).catch(() => undefined);
    if (!inst) return;
    if (this.wanted(inst)) await this.ensure(inst);
    else if (this.loops.has(name) && this.loops.get(name)?.loop.state !== 'killing' && inst.status !== 'Running' && inst.status !== 'Frozen') await this.end(name, 'it is no longer running');
  }

  private ensure(inst: InstanceFull): Promise<void> {
    const name = inst.name;
    const entry = this.loops.get(name);
    if (entry && entry.loop.state !== 'stopped' && entry.loop.state !== 'killed') return Promise.resolve();
    const inflight = this.starting.get(name);
    if (inflight) return inflight;
    const p = this.begin(inst).finally(() => this.starting.delete(name));
    this.starting.set(name, p);
    return p;
  }

  private async openAudit(name: string, ownerUid: number, policy: MonitorPolicy): Promise<{ writer?: AuditWriter; path?: string; location?: AuditLocation }> {
    const primary = auditLocation(ownerUid, { ...(this.o.env ? { env: this.o.env } : {}) });
    const tries = primary.source === 'fallback' ? [primary] : [primary, { dir: path.join(FALLBACK_AUDIT_ROOT, String(ownerUid)), owner: primary.owner, ownedFrom: path.join(FALLBACK_AUDIT_ROOT, String(ownerUid)), source: 'fallback' as const }];
    for (const loc of tries) {
      try {
        ensureAuditDir(loc);
        await pruneAudit(loc.dir, policy.retentionDays, new Date(), name).catch(() => []);
        const writer = await AuditWriter.open({ dir: loc.dir, container: name, retentionDays: policy.retentionDays, owner: loc.owner });
        return { writer, path: writer.path, location: loc };
      } catch (e) {
        this.o.log.warn(`monitor: cannot write ${name}'s audit log in ${loc.dir}: ${toCoiError(e).message}`);
      }
    }
    return {};
  }

  private async begin(inst: InstanceFull): Promise<void> {
    const name = inst.name;
    const decoded = decodePolicy(inst.config[LABELS.monitor]);
    if (decoded.kind === 'absent') return;
    const policy = decoded.policy;
    const ownerUid = Number(inst.config[LABELS.owner] ?? '0');
    const owner = Number.isSafeInteger(ownerUid) && ownerUid >= 0 ? ownerUid : 0;
    const audit = await this.openAudit(name, owner, policy);
    if (this.stopped) {
      await audit.writer?.close();
      return;
    }
    const cgroupRoot = this.o.cgroupRoot;
    const collector = new ProcessCollector({ container: name, ...(cgroupRoot ? { cgroupRoot } : {}), ...(this.o.procRoot ? { procRoot: this.o.procRoot } : {}) });
    const entry: Entry = { ownerUid: owner, ...(audit.path ? { auditPath: audit.path } : {}), ...(audit.writer ? { writer: audit.writer } : {}) } as Entry;
    const loop = new MonitorLoop({
      container: name,
      policy,
      collector,
      freeze: () => writeFreezer(name, true, cgroupRoot),
      isFrozen: () => {
        const s = readFreezer(name, cgroupRoot);
        return s === undefined ? undefined : s !== 'thawed';
      },
      incusFreeze: () => incusFreeze(this.o.incus, name),
      stopping: () => incusStopping(this.o.incus, name),
      kill: () => killSandbox(this.o.incus, name, { forensics: policy.forensicsOnKill, log: this.o.log }),
      audit: audit.writer ?? { append: async () => Promise.reject(new Error('no audit log could be opened')) },
      publish: (r) => this.publish(name, owner, entry.auditPath, r),
      onEnded: (state) => void this.ended(name, loop, state),
      track: (pids) => entry.trace?.track(pids),
      ownerOf: (pid) => pidOwner(pid, name, this.o.procRoot),
      log: this.o.log,
      guardPid: process.pid,
      ...(this.o.intervalMs ? { intervalMs: this.o.intervalMs } : {}),
    });
    entry.loop = loop;
    this.loops.set(name, entry);
    if (this.tracefs) {
      const t = TraceSession.open({ root: this.tracefs, container: name, log: this.o.log, onEvent: (e) => loop.onTrace(e) });
      if (t instanceof TraceSession) entry.trace = t;
      else this.o.log.warn(`monitor: ${name} without kernel trace (${t.unavailable}); polling only`);
    }

    // A cgroup frozen behind Incus's back (a guard killed between its freeze and
    // telling Incus): tell Incus now, so its state agrees and resume works.
    const fz = readFreezer(name, cgroupRoot);
    const frozen = inst.status === 'Frozen' || fz === 'frozen' || fz === 'freezing';
    const notes: string[] = [];
    if (decoded.kind === 'invalid') notes.push(`its ${LABELS.monitor} label is unreadable (${decoded.error}), so the defaults apply`);
    if (frozen) notes.push('it is frozen');
    if (audit.location?.source === 'fallback') notes.push(`the audit log is in ${audit.location.dir}`);
    loop.start({ frozen, ...(notes.length ? { note: notes.join('; ') } : {}) });
    void this.followDns(inst).catch((e: unknown) => this.o.log.warn(`monitor: DNS names of ${name}: ${toCoiError(e).message}`));
    this.o.log.info(`monitor: watching ${name} (owner uid ${owner}, audit ${audit.path ?? 'NONE'})`);
    if (inst.status === 'Running' && frozen) {
      await incusFreeze(this.o.incus, name).catch((e: unknown) => this.o.log.warn(`monitor: ${name} is frozen in its cgroup but Incus would not record it: ${toCoiError(e).message}`));
    }
  }

  /** Follows the query log of the sandbox's bridge(s), and learns its addresses. */
  private async followDns(inst: InstanceFull): Promise<void> {
    const feed = this.dnsFeed;
    if (!feed) return;
    const devices = { ...(inst.devices ?? {}), ...(inst.expanded_devices ?? {}) };
    const bridges = new Set(Object.values(devices).flatMap((d) => (d.type === 'nic' && d.network ? [d.network] : [])));
    for (const b of bridges) {
      let known = this.bridgeLogs.get(b);
      // Asked again now and then: `coi setup` may have turned the log on (or someone off) since.
      if (!known || Date.now() - known.at > BRIDGE_RECHECK_MS) {
        known = { at: Date.now(), path: this.queryLogOfBridge(b) };
        this.bridgeLogs.set(b, known);
      }
      const p = await known.path;
      if (p) feed.watch(p);
    }
    feed.addressesChanged();
    await this.refreshAddresses();
  }

  private async queryLogOfBridge(b: string): Promise<string | undefined> {
    const n = await this.o.incus.get<{ config?: Record<string, string> }>(this.o.incus.url(`/1.0/networks/${encodeURIComponent(b)}`)).catch(() => undefined);
    if (!n) {
      // Asked again by the next sandbox on it.
      this.bridgeLogs.delete(b);
      return undefined;
    }
    const log = queryLogOf(n.config?.['raw.dnsmasq']);
    if (!log) this.o.log.warn(`monitor: the resolver of bridge ${b} does not log query names (raw.dnsmasq has no log-queries and log-facility=/file; coi setup sets them): DNS tunnels with short labels go unseen there`);
    else this.o.log.info(`monitor: DNS query names of bridge ${b} from ${log.path}`);
    return log?.path;
  }

  /** Re-reads the addresses Incus reports for each watched sandbox's NICs. */
  private async refreshAddresses(): Promise<void> {
    const next = new Map<string, string[]>();
    await Promise.all(
      [...this.loops.keys()].map(async (name) => {
        const st = await this.o.incus.getState(name).catch(() => undefined);
        if (!st) {
          // A failed look keeps what was known: its queries must not go unattributed meanwhile.
          for (const [a, names] of this.addresses) if (names.includes(name)) next.set(a, [...new Set([...(next.get(a) ?? []), name])]);
          return;
        }
        for (const [nic, n] of Object.entries(st.network ?? {})) {
          if (nic === 'lo') continue;
          for (const a of n.addresses ?? []) {
            if ((a.family !== 'inet' && a.family !== 'inet6') || a.scope === 'local' || a.scope === 'link') continue;
            const list = next.get(a.address) ?? [];
            if (!list.includes(name)) list.push(name);
            next.set(a.address, list);
          }
        }
      }),
    );
    this.addresses = next;
  }

  private publish(name: string, ownerUid: number, auditPath: string | undefined, r: AuditRecord): void {
    this.o.publish({ container: name, ownerUid, ...(auditPath ? { auditPath } : {}), record: toThreatWire(r) });
  }

  private async end(name: string, reason: string): Promise<void> {
    const entry = this.loops.get(name);
    if (!entry) return;
    await entry.loop.stop(reason);
    await this.ended(name, entry.loop, entry.loop.state);
  }

  private async ended(name: string, loop: MonitorLoop, _state: LoopState): Promise<void> {
    const entry = this.loops.get(name);
    if (!entry || entry.loop !== loop) return;
    entry.trace?.close();
    await loop.flush();
    this.loops.delete(name);
    await entry.writer?.close().catch(() => undefined);
  }

  /** What `coi monitor` shows. */
  async snapshot(container?: string): Promise<{ execEvents: { available: boolean; reason?: string; events: number }; monitors: MonitorStatus[] }> {
    const events = [...this.loops.values()].reduce((n, e) => n + (e.trace?.events ?? 0), 0);
    const execEvents = { available: this.tracefs !== undefined, ...(this.traceUnavailable ? { reason: this.traceUnavailable } : {}), events };
    if (container === undefined) return { execEvents, monitors: [...this.loops.values()].map((e) => this.status(e, false)) };
    const entry = this.loops.get(container);
    if (entry) return { execEvents, monitors: [this.status(entry, true)] };
    // Not watched: one look, with the detectors' verdicts, and no response.
    const collector = new ProcessCollector({ container, ...(this.o.cgroupRoot ? { cgroupRoot: this.o.cgroupRoot } : {}), ...(this.o.procRoot ? { procRoot: this.o.procRoot } : {}) });
    const snap = collector.collect();
    const threats = runDetectors(snap, undefined, {}).map((ev) => toThreatWire({ id: ev.id, timestamp: ev.time, level: ev.level, category: ev.category, title: ev.title, description: ev.description, evidence: { ...ev.evidence }, action: 'not monitored', container, detector: ev.detector, mitre: ev.mitre }));
    return { execEvents, monitors: [{ container, state: 'unmonitored', polls: 1, peeks: 0, lastPollMs: collector.stats.lastDurationMs, ...describeSnapshot(snap), threats }] };
  }

  private status(e: Entry, detail: boolean): MonitorStatus {
    const l = e.loop;
    const p = l.policy;
    const state: MonitorStatus['state'] = l.state === 'frozen' ? 'frozen' : l.state === 'killing' ? 'killing' : l.state === 'watching' ? 'watching' : 'waiting';
    const snap = l.lastSnapshot;
    return {
      container: l.container,
      state,
      ownerUid: e.ownerUid,
      policy: { pauseOnHigh: p.pauseOnHigh, killOnCritical: p.killOnCritical, forensicsOnKill: p.forensicsOnKill, retentionDays: p.retentionDays, thresholds: { ...p.thresholds } },
      ...(e.auditPath ? { auditPath: e.auditPath } : {}),
      startedAt: l.startedAt.toISOString(),
      polls: l.stats.polls,
      peeks: l.stats.peeks,
      lastPollMs: l.stats.lastDurationMs,
      ...(snap ? { processCount: snap.processCount } : {}),
      ...(detail && snap ? describeSnapshot(snap) : {}),
      threats: l.recent.map(toThreatWire),
    };
  }
}

function describeSnapshot(s: Snapshot): Pick<MonitorStatus, 'processes' | 'connections' | 'processCount'> {
  const owner = new Map<number, { pid: number; comm: string }>();
  const processes = [...s.processes.values()].map((p) => {
    for (const f of p.fds) if (f.socket && !owner.has(f.socket.inode)) owner.set(f.socket.inode, { pid: p.pid, comm: p.comm });
    const stdio = [0, 1, 2].map((n) => {
      const f = p.fds.find((x) => x.fd === n);
      if (!f) return '';
      return f.socket ? `${f.target} ${f.socket.proto} ${formatEndpoint(f.socket.remote.address, f.socket.remote.port)} ${f.socket.state}` : f.target;
    });
    return { pid: p.pid, ...(p.nsPid !== undefined ? { nsPid: p.nsPid } : {}), ppid: p.ppid, uid: p.uid, comm: p.comm, argv: capArgv(p.argv, 32, 512), ...(p.state ? { state: p.state } : {}), stdio };
  });
  const connections = s.connections
    .filter((c) => c.state !== 'LISTEN' || c.proto === 'tcp')
    .slice(0, 500)
    .map((c) => {
      const o = c.inode ? owner.get(c.inode) : undefined;
      return { proto: c.proto, local: formatEndpoint(c.local.address, c.local.port), remote: formatEndpoint(c.remote.address, c.remote.port), state: c.state, ...(o ? { pid: o.pid, comm: o.comm } : {}) };
    });
  return { processes, connections, processCount: s.processCount };
}

