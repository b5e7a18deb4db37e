/**
 * The guard's network fence: keeps the kernel's rules equal to what Incus
 * says the sandboxes are.
 *
 * - Reconcile: list the instances, compute the desired state of ALL sandboxes
 *   this guard fences (desired.ts), render it (render.ts) and apply it as one
 *   `nft -f` transaction. Runs on start, when the Incus event stream
 *   (re)connects, on lifecycle events (created, deleted, renamed, updated,
 *   started), after each allowlist refresh and every few minutes. Requests are
 *   serialised and coalesced: one apply at a time, and every caller waits for
 *   an apply that started (and so listed Incus) after it asked. Rules of
 *   instances that no longer exist are simply not rendered, so they vanish with
 *   the next apply; a deletion event that arrives while an apply whose listing
 *   still held the instance is in progress queues the next one. A guard
 *   killed mid-apply leaves the old or the new ruleset (the transaction is
 *   atomic and the script is on disk in full before nft starts), and the
 *   reconcile of the next start repairs whatever changed meanwhile.
 * - Secure: the fail-closed handshake before a sandbox starts (see
 *   GuardSecureSandbox): answers only once its rules are in place.
 * - Allowlists: resolves names on the host with their TTLs, caches them on
 *   disk, writes them into the container's /etc/hosts.
 * - Packet events: our rules' kernel log lines, published to subscribers.
 * - `backend = "firewalld"` sandboxes: each reconcile also computes their
 *   zones and policies from the listing (desiredFirewalld) and has
 *   FirewalldSandboxes install or remove the difference; until a sandbox's are
 *   live its boot block stays in our tables, and it comes back when firewalld
 *   stops (a 5 s poll of the process list).
 *
 * Stopping the guard leaves the rules in place: sandboxes stay fenced while it
 * is down, and a launch without a guard fails.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes, toCoiError } from '../../errors';
import type { IncusClient } from '../../incus/client';
import { lifecycleOf } from '../../incus/events';
import type { InstanceFull, RawEvent } from '../../incus/types';
import type { Log } from '../../log';
import { LABELS } from '../../sandbox/labels';
import { NetworkLabel } from '../../sandbox/network-label';
import { SETUP_NAMES } from '../../setup/names';
import {
  allowedIps,
  DEFAULT_TIMING,
  hostsEntries,
  mergeHosts,
  NameState,
  staticHostsEntries,
  nextNameState,
  readCache,
  refreshDelaySec,
  Resolve4,
  staleCacheFiles,
  TimingOptions,
  writeCache,
} from './allowlist';
import { Desired, desiredFirewalld, desiredState, gatewayOf, inScope, ManagedSandbox, managedSandboxOf, Problem } from './desired';
import type { PacketEvent } from './kmsg';
import { KmsgReader } from './kmsg-reader';
import { sandboxKey, TableNames, tablesFor } from './names';
import { chooseTag, HOST_TAG } from './marks';
import { guardTablesIn, renderRemoveScopes, ScopeTables, staleScopes, tagsInUse } from './guard-tables';
import { applyRuleset, applyRulesetFile, listInstalledRules, listRulesetText, NftExec, nftExec } from './nft';
import { FirewallCmdExec, FirewalldSandboxes, firewalldPid, FirewalldZoneKeeper } from './firewalld-runner';
import { findOrphans, InstalledRules } from './parse';
import { renderRuleset } from './render';
import type { ResolvedIp } from './types';

const RECONCILE_ACTIONS = /^instance-(created|deleted|renamed|updated|started|restarted)$/;
const SWEEP_MS = 5 * 60_000;
const RETRY_MS = 5_000;
// A bridge's address is forgotten at its network-updated event; the TTL covers an event missed
// while the event stream was down. Read once per sweep, not on a launch's critical path.
const GATEWAY_TTL_MS = SWEEP_MS;
/** How long a deletion event that comes after the apply which already dropped the instance still gets an apply. */
const DEPARTED_MS = 10 * 60_000;
/** How often the guard looks for a firewalld it has not seen yet (a /proc scan; firewall-cmd only when one is new). */
const FIREWALLD_POLL_MS = 5_000;

export interface NetworkControllerOptions {
  incus: IncusClient;
  log: Log;
  /** '' for the host's guard; a test's guard fences only instances labelled with its scope, in tables of their own. */
  scope: string;
  /** Where the rendered script is written before nft reads it (root only). */
  stateDir: string;
  /** Where allowlist resolutions are cached across restarts. */
  cacheDir: string;
  nft?: NftExec;
  resolve4: Resolve4;
  /** Resolvers that override every sandbox's (COI_DNS_RESOLVER): "ip" or "ip:port". */
  resolvers?: string[];
  timing?: TimingOptions;
  /** The kernel log to follow; null = do not follow any. */
  kmsgPath?: string | null;
  onPacket?: (e: PacketEvent) => void;
  now?: () => number;
  /**
   * firewall-cmd, to keep the sandbox bridges in a firewalld zone that passes
   * their traffic while a firewalld runs, and to install the zones and
   * policies of `backend = "firewalld"` sandboxes; absent = never touch
   * firewalld (such sandboxes then stay blocked).
   */
  firewalld?: FirewallCmdExec;
}

interface Allowlist {
  container: string;
  label: NetworkLabel;
  names: Map<string, NameState>;
  timer?: NodeJS.Timeout;
  refreshing?: Promise<void>;
}

export interface ApplyReport {
  at: string;
  ok: boolean;
  /** The first request this apply served. */
  reason: string;
  /** Every request it served: those that arrived while it waited are coalesced into it. */
  reasons: string[];
  error?: string;
}

/** How many applies the status keeps: enough to see which one served a request made moments ago. */
const RECENT_APPLIES = 32;
/** Requests named per apply; a burst beyond this is counted (a stalled apply must not pile up every event). */
const MAX_REASONS = 20;

export class NetworkController {
  readonly tables: TableNames;
  private readonly nft: NftExec;
  private readonly timing: TimingOptions;
  private readonly now: () => number;
  private readonly allowlists = new Map<string, Allowlist>();
  /** Containers fenced by the last successful apply. */
  private fenced = new Set<string>();
  private lastDesired: Desired | undefined;
  private lastApply: ApplyReport | undefined;
  private readonly recentApplies: ApplyReport[] = [];
  /** Container → the resolved addresses its installed rules allow (allowlists), as of the last successful apply. */
  private applied = new Map<string, ReadonlySet<string>>();
  /** Container → the /etc/hosts lines last written ("ip name" joined), to write only on change. */
  private readonly hostsWritten = new Map<string, string>();
  /** Container → the write of its /etc/hosts in progress: one at a time, so an older one never lands last. */
  private readonly hostsWriting = new Map<string, Promise<void>>();
  private readonly gateways = new Map<string, { ip: string | undefined; at: number }>();
  private running: Promise<Desired> | undefined;
  private queued: Promise<Desired> | undefined;
  /** The requests waiting for the queued apply (the first MAX_REASONS of them, and how many in all). */
  private queuedReasons: Reasons = { first: [], count: 0 };
  /**
   * The apply in progress: `listed` holds the sandboxes of its Incus listing
   * once it has one. A deletion that happens after the listing was taken is
   * not in it, and its event may arrive before the apply ends (so before
   * `fenced` knows the instance): the event must not be dropped as "not ours".
   */
  private inFlight: { listed?: ReadonlySet<string> } | undefined;
  /** Sandboxes an apply knew and a later one no longer listed → since when (ms): their deletion event may come late. */
  private readonly departed = new Map<string, number>();
  /** Instances whose instance-updated events are left to a reconcile still to come (see holdUpdates). */
  private readonly holding = new Set<string>();
  /** Updates a pool take is making now, stood in for the listing until Incus has them (see expectUpdate). */
  private readonly pendingUpdates = new Map<string, InstanceFull>();
  private retryTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private kmsg: KmsgReader | undefined;
  private stopped = false;
  private loggedProblems = '';
  /** This guard's tag in the packet marks (marks.ts): chosen at start, apart from every other guard's. */
  private tag = HOST_TAG;
  private readonly firewalld: FirewalldZoneKeeper | undefined;
  private firewalldTimer: NodeJS.Timeout | undefined;
  /** `backend = "firewalld"` sandboxes' zones and policies. */
  private readonly fwSandboxes: FirewalldSandboxes | undefined;
  /** The firewalld pid the last poll saw (null: not polled yet). */
  private fwSeenPid: number | undefined | null = null;
  /** The next sync lists firewalld's objects first (firewalld new, guard start, clean-up, periodic check). */
  private fwRelist = true;
  /** The bridges the sandboxes were attached to at the last reconcile. */
  private sandboxBridges = new Set<string>();

  constructor(private readonly o: NetworkControllerOptions) {
    this.tables = tablesFor(o.scope);
    this.nft = o.nft ?? nftExec();
    this.timing = o.timing ?? DEFAULT_TIMING;
    this.now = o.now ?? Date.now;
    this.firewalld = o.firewalld ? new FirewalldZoneKeeper({ cmd: o.firewalld, log: o.log }) : undefined;
    this.fwSandboxes = o.firewalld ? new FirewalldSandboxes({ cmd: o.firewalld, scope: o.scope, log: o.log }) : undefined;
  }

  /** The set-up's bridge and every bridge a sandbox is on. */
  private bridgeNames(extra?: string): string[] {
    return [SETUP_NAMES.bridge, ...this.sandboxBridges, ...(extra ? [extra] : [])];
  }

  /**
   * Claims the scope (one guard per scope replaces its tables: two would undo
   * each other's applies), applies the rules of every sandbox (errors are
   * logged and retried) and starts following the kernel log.
   */
  async start(): Promise<void> {
    await this.claimScope();
    if (this.o.scope) {
      const found = await this.removeStaleScopes(guardTablesIn(await listRulesetText(this.nft)));
      this.tag = chooseTag(this.o.scope, tagsInUse(found, this.o.scope));
      this.o.log.info(`network marks of scope ${this.o.scope}: tag ${this.tag}`);
    }
    if (this.o.kmsgPath !== null) {
      this.kmsg = new KmsgReader({ log: this.o.log, onEvent: (e) => this.packet(e), ...(this.o.kmsgPath ? { path: this.o.kmsgPath } : {}) });
      this.kmsg.start();
    }
    await this.reconcile('guard start').catch(() => undefined);
    this.sweepTimer = setInterval(() => {
      // An administrator may have deleted or edited our objects: look, not trust memory.
      this.fwRelist = true;
      void this.reconcile('periodic check').catch(() => undefined);
    }, SWEEP_MS);
    this.sweepTimer.unref();
    if (this.firewalld) {
      await this.firewalld.check(this.bridgeNames());
      this.fwSeenPid = await firewalldPid();
      this.firewalldTimer = setInterval(() => {
        void this.firewalld!.check(this.bridgeNames());
        void this.watchFirewalld();
      }, FIREWALLD_POLL_MS);
      this.firewalldTimer.unref();
    }
  }

  /**
   * Removes the tables of scoped guards that died and left no sandbox behind
   * (guard-tables.ts); returns what is left. Best effort: a failure only
   * leaves them, and the tag choice says so if they are in the way.
   */
  private async removeStaleScopes(found: Map<string, ScopeTables>): Promise<Map<string, ScopeTables>> {
    try {
      const instances = await this.o.incus.listInstances({ recursion: 1, timeoutMs: 30_000 });
      const scopesInUse = new Set(instances.map((i) => i.config?.[LABELS.guardScope]).filter((s): s is string => !!s));
      const live = new Set<number>();
      for (const s of found.values()) if (s.ownerPid !== undefined && (await isGuardProcess(s.ownerPid))) live.add(s.ownerPid);
      const stale = staleScopes(found, { ownScope: this.o.scope, liveGuard: (pid) => live.has(pid), scopesInUse });
      if (stale.length === 0) return found;
      await applyRuleset(renderRemoveScopes(stale), this.nft);
      this.o.log.info(`removed the tables of ${stale.length} scope(s) whose guard is gone and which fence no instance: ${stale.map((s) => s.scope).join(', ')}`);
      for (const s of stale) found.delete(s.scope);
    } catch (e) {
      this.o.log.warn(`could not remove the tables of dead guards' scopes: ${toCoiError(e).message}`);
    }
    return found;
  }

  private get ownerFile(): string {
    return path.join(this.o.stateDir, 'owner.pid');
  }

  private async claimScope(): Promise<void> {
    await fs.mkdir(this.o.stateDir, { recursive: true, mode: 0o700 });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await fs.writeFile(this.ownerFile, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const pid = Number((await fs.readFile(this.ownerFile, 'utf8').catch(() => '')).trim());
      if (pid > 0 && pid !== process.pid && (await isGuardProcess(pid))) {
        throw new CoiError(ErrorCodes.ALREADY_EXISTS, `another guard (pid ${pid}) already fences the sandboxes of scope ${JSON.stringify(this.o.scope)}; two would undo each other's rules`, {
          remedy: { title: 'Use that guard, or give this one a scope of its own (COI_GUARD_SCOPE, for tests)' },
          details: { ownerFile: this.ownerFile },
        });
      }
      // Left by a guard that died (kill -9, a crash): ours now.
      await fs.rm(this.ownerFile, { force: true });
    }
    throw new CoiError(ErrorCodes.ALREADY_EXISTS, `could not claim ${this.ownerFile}`);
  }

  /**
   * A firewalld that stopped took the zones and policies of the firewalld
   * sandboxes with it: they are blocked again at once. One that started (or
   * restarted) is listed, so its objects are live again or repaired.
   */
  private async watchFirewalld(): Promise<void> {
    const pid = await firewalldPid();
    if (pid === this.fwSeenPid) return;
    this.fwSeenPid = pid;
    this.fwRelist = true;
    await this.reconcile(pid === undefined ? 'firewalld stopped' : `firewalld runs (pid ${pid})`).catch(() => undefined);
  }

  /** Stops timers and the kernel log; the rules stay in force. */
  stop(): void {
    this.stopped = true;
    void fs
      .readFile(this.ownerFile, 'utf8')
      .then((t) => (Number(t.trim()) === process.pid ? fs.rm(this.ownerFile, { force: true }) : undefined))
      .catch(() => undefined);
    this.kmsg?.stop();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.firewalldTimer) clearInterval(this.firewalldTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const a of this.allowlists.values()) if (a.timer) clearTimeout(a.timer);
  }

  /**
   * Reconciles after a lifecycle event that may change the rules: one about an
   * instance of ours (known from the last apply, or found to be ours now), or
   * a network change. Events about everybody else's instances cost one GET.
   */
  onIncusEvent(e: RawEvent): void {
    const lc = lifecycleOf(e);
    if (!lc) return;
    if (lc.action === 'network-updated') {
      this.gateways.clear();
      void this.reconcile(`${lc.action} ${lc.source}`).catch(() => undefined);
      return;
    }
    if (!RECONCILE_ACTIONS.test(lc.action)) return;
    const m = /^\/1\.0\/instances\/([^/?]+)/.exec(lc.source);
    if (!m) return;
    const name = decodeURIComponent(m[1]!);
    // An update the guard made itself, with a reconcile of its own to follow that has not listed yet: that
    // one sees it. Reconciling for the event as well applied the rules twice per pool take.
    if (lc.action === 'instance-updated' && this.holding.has(name)) {
      this.o.log.debug(`network: ${lc.action} ${name} left to the reconcile that follows the guard's own update`);
      return;
    }
    void (async () => {
      if (!this.known(name)) {
        if (lc.action === 'instance-deleted') {
          if (!this.deletionConcernsUs(name)) return;
        } else {
          const inst = await this.o.incus.getInstance(name, { timeoutMs: 30_000 }).catch(() => undefined);
          // Gone already (created and deleted at once): the next event or sweep sees to it.
          if (!inst || !inScope(inst, this.o.scope)) return;
        }
      }
      await this.reconcile(`${lc.action} ${name}`);
    })().catch(() => undefined);
  }

  /** Whether the last apply knew this instance (fenced, blocked or unfenceable). */
  private known(name: string): boolean {
    if (this.fenced.has(name)) return true;
    const d = this.lastDesired;
    return !!d && [...d.blocked, ...d.unfenced].some((p) => p.container === name);
  }

  private knownNames(): string[] {
    const d = this.lastDesired;
    return [...this.fenced, ...(d ? [...d.blocked, ...d.unfenced].map((p) => p.container) : [])];
  }

  /**
   * Whether the deletion of an instance the last apply did not know is ours to
   * apply for anyway:
   * - an apply in progress may have listed it before it went (or may be
   *   listing now): it would install its rules after this event, and nothing
   *   would remove them until the next sweep;
   * - an apply that listed after the deletion has removed its rules already,
   *   before the event came: one more apply costs little, and every deletion
   *   of a sandbox of ours is then served by an apply (the status shows which).
   */
  private deletionConcernsUs(name: string): boolean {
    if (this.departed.delete(name)) return true;
    const f = this.inFlight;
    return !!f && (!f.listed || f.listed.has(name));
  }

  onEventsConnected(): void {
    void this.reconcile('Incus events (re)connected').catch(() => undefined);
  }

  // ── reconcile ──────────────────────────────────────────────────────────────

  /**
   * Resolves with the state applied by a reconcile that started after this
   * call, so from an Incus listing taken after it: requests that arrive while
   * an apply runs share the next one, which lists Incus anew when it starts.
   */
  reconcile(reason: string): Promise<Desired> {
    if (this.queued) {
      addReason(this.queuedReasons, reason);
      return this.queued;
    }
    const prev = this.running ?? Promise.resolve(undefined);
    const p: Promise<Desired> = prev
      .catch(() => undefined)
      .then(async () => {
        const reasons = listReasons(this.queuedReasons);
        this.queued = undefined;
        this.queuedReasons = { first: [], count: 0 };
        this.running = p;
        try {
          return await this.reconcileNow(reasons);
        } finally {
          if (this.running === p) this.running = undefined;
        }
      });
    this.queued = p;
    this.queuedReasons = { first: [reason], count: 1 };
    return p;
  }

  private report(at: string, all: string[], ok: boolean, error?: string): ApplyReport {
    const r: ApplyReport = { at, ok, reason: all[0] ?? '', reasons: all, ...(error !== undefined ? { error } : {}) };
    this.lastApply = r;
    this.recentApplies.push(r);
    if (this.recentApplies.length > RECENT_APPLIES) this.recentApplies.shift();
    return r;
  }

  private async reconcileNow(reasons: string[]): Promise<Desired> {
    const at = new Date(this.now()).toISOString();
    const reason = reasons.join('; ');
    const flight: { listed?: ReadonlySet<string> } = {};
    this.inFlight = flight;
    // This listing sees every update made so far: the holds have served. Not those of updates still
    // under way, whose events are still to come: the listing stands in their result for them.
    for (const h of [...this.holding]) if (!this.pendingUpdates.has(h)) this.holding.delete(h);
    try {
      const t0 = Date.now();
      const instances = (await this.o.incus.listInstances({ recursion: 1, timeoutMs: 30_000 })).map((i) => {
        const p = this.pendingUpdates.get(i.name);
        return p && p.config?.['volatile.uuid'] === i.config?.['volatile.uuid'] ? p : i;
      });
      const listMs = Date.now() - t0;
      const sandboxes = instances.map((i) => managedSandboxOf(i, this.o.scope)).filter((s): s is ManagedSandbox => s !== undefined);
      flight.listed = new Set(sandboxes.map((s) => s.container));
      this.sandboxBridges = new Set(sandboxes.flatMap((s) => (s.bridge ? [s.bridge] : [])));
      await this.syncAllowlists(sandboxes);
      const gateways = await this.gatewaysOf(sandboxes);
      const resolved = new Map<string, ResolvedIp[]>();
      for (const a of this.allowlists.values()) resolved.set(a.container, allowedIps(a.names, this.timing));
      // backend = "firewalld": blocked by the guard's tables until firewalld's own objects are live.
      const fw = desiredFirewalld(sandboxes, gateways, this.o.scope);
      const fwProblems = new Map<string, Omit<Problem, 'container'>>([...fw.problems].map(([c, problem]) => [c, { problem }]));
      if (!this.fwSandboxes) for (const c of fw.objects.keys()) fwProblems.set(c, { problem: 'this guard manages no firewalld objects (it runs without firewall-cmd)' });
      let nftMs = 0;
      const apply = async (live: ReadonlySet<string>): Promise<Desired> => {
        const d = desiredState(sandboxes, { gateways, resolved, firewalld: { live, problems: fwProblems } });
        const script = renderRuleset(d.state, { now: this.now(), tables: this.tables, tag: this.tag, owner: process.pid });
        const t1 = Date.now();
        await applyRulesetFile(script, this.o.stateDir, this.nft);
        nftMs += Date.now() - t1;
        return d;
      };
      const liveBefore = this.fwSandboxes?.live(fw.objects) ?? new Set<string>();
      let desired = await apply(liveBefore);
      if (this.fwSandboxes && (fw.objects.size > 0 || this.fwRelist || (await this.fwSandboxes.objects()).size > 0)) {
        const relist = this.fwRelist;
        this.fwRelist = false;
        const r = await this.fwSandboxes.sync(fw.objects, { relist });
        if (r.error) {
          if (relist) this.fwRelist = true; // not listed: try again next time
          for (const c of fw.objects.keys()) if (!r.live.has(c)) fwProblems.set(c, { problem: r.error.message, ...(r.error.remedy ? { remedy: r.error.remedy } : {}) });
          if (fw.objects.size === 0) this.o.log.warn(`firewalld: ${r.error.message}`);
        }
        const changed = r.live.size !== liveBefore.size || [...r.live].some((c) => !liveBefore.has(c));
        if (changed || r.error) desired = await apply(r.live);
      }
      const now = this.now();
      for (const c of this.knownNames()) if (!flight.listed.has(c)) this.departed.set(c, now);
      for (const [c, since] of this.departed) if (flight.listed.has(c) || now - since > DEPARTED_MS) this.departed.delete(c);
      this.fenced = new Set(desired.fenced);
      this.applied = new Map(desired.state.sandboxes.filter((n) => n.mode === 'allowlist').map((n) => [n.container, new Set(n.resolvedIps.map((r) => r.ip))]));
      for (const c of [...this.hostsWritten.keys()]) if (!sandboxes.some((s) => s.container === c)) this.hostsWritten.delete(c);
      this.lastDesired = desired;
      this.report(at, reasons, true);
      // Problems are logged when they change, not at every apply.
      const problems = [...desired.blocked, ...desired.unfenced].map((p) => `network of ${p.container}: ${p.problem}`);
      const key = problems.join('\n');
      if (key !== this.loggedProblems) for (const p of problems) this.o.log.warn(p);
      this.loggedProblems = key;
      this.o.log.debug(`network rules applied (${reason}): ${desired.fenced.length} fenced, ${desired.blocked.length} blocked, ${desired.unfenced.length} unfenceable, in ${Date.now() - t0} ms (Incus listing ${listMs}, nft ${nftMs})`);
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      return desired;
    } catch (e) {
      const err = toCoiError(e);
      this.report(at, reasons, false, err.message);
      this.o.log.error(`could not apply the network rules (${reason}): ${err.message}`);
      if (!this.stopped && !this.retryTimer) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          void this.reconcile('retry after a failed apply').catch(() => undefined);
        }, RETRY_MS);
        this.retryTimer.unref();
      }
      throw err;
    } finally {
      // After `fenced` took the listing over (or the apply failed, and the retry lists again).
      if (this.inFlight === flight) this.inFlight = undefined;
    }
  }

  private async gatewaysOf(sandboxes: readonly ManagedSandbox[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const bridges = new Set(sandboxes.filter((s) => s.bridge && s.label?.mode !== 'open').map((s) => s.bridge!));
    for (const b of bridges) {
      const cached = this.gateways.get(b);
      let ip = cached && this.now() - cached.at < GATEWAY_TTL_MS ? cached.ip : undefined;
      if (!cached || this.now() - cached.at >= GATEWAY_TTL_MS) {
        try {
          const n = await this.o.incus.get<{ config?: Record<string, string> }>(this.o.incus.url(`/1.0/networks/${encodeURIComponent(b)}`));
          ip = gatewayOf(n.config?.['ipv4.address']);
        } catch (e) {
          this.o.log.warn(`cannot read network ${b}: ${toCoiError(e).message}`);
          ip = undefined;
        }
        this.gateways.set(b, { ip, at: this.now() });
      }
      if (ip) out.set(b, ip);
    }
    return out;
  }

  /**
   * For an update the guard is about to make itself and then secure (a pool
   * take): its instance-updated event is left to the reconcile of that
   * secure, which lists after the update. The hold ends when any reconcile
   * starts listing, or with the returned release (the update failed).
   */
  holdUpdates(name: string): () => void {
    this.holding.add(name);
    return () => {
      if (this.holding.delete(name)) void this.reconcile(`released hold on ${name}`).catch(() => undefined);
    };
  }

  /**
   * A pool take applies the sandbox's labels and fences it at once: the rules
   * of `now` (the member as the update will leave it) are applied while the
   * update runs, and every reconcile until `done` lists `now` in its place.
   * `done` when the update has ended (failed: the caller deletes the member).
   */
  expectUpdate(name: string, now: InstanceFull): () => void {
    this.pendingUpdates.set(name, now);
    return () => {
      if (this.pendingUpdates.get(name) === now) this.pendingUpdates.delete(name);
    };
  }

  // ── secure ─────────────────────────────────────────────────────────────────

  /**
   * `known`: the instance as the caller has just made it (a pool take: the
   * member it read plus the update it applied), so as not to read it again.
   * Only its labels are taken from it; what is fenced comes from the
   * reconcile's own listing.
   */
  async secure(name: string, known?: InstanceFull): Promise<{ name: string; mode: NetworkLabel['mode']; hostIface: string; resolved: Array<{ name: string; ips: string[]; error?: string }>; warnings: string[] }> {
    let inst: InstanceFull;
    try {
      inst = known ?? (await this.o.incus.getInstance(name, { timeoutMs: 30_000 }));
    } catch (e) {
      const err = toCoiError(e);
      if (err.code === ErrorCodes.NOT_FOUND) throw new CoiError(ErrorCodes.NOT_FOUND, `cannot fence ${name}: no such instance`);
      throw err;
    }
    const sb = managedSandboxOf(inst, this.o.scope);
    if (!sb) {
      const c = inst.config ?? {};
      if (c['user.coi.managed'] !== 'true') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is not a COI sandbox (no user.coi.managed label): the guard fences only its own`);
      const theirs = c['user.coi.guard-scope'] ?? '';
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is fenced by the guard of scope ${JSON.stringify(theirs)}, not by this one (scope ${JSON.stringify(this.o.scope)})`, {
        remedy: { title: 'Use the matching guard (COI_GUARD_SOCKET and COI_GUARD_SCOPE)' },
      });
    }
    if (sb.noNetwork) throw new CoiError(ErrorCodes.INVALID_INPUT, `${name} has no network interface: there is nothing to fence, and a COI sandbox always has one`);
    if (sb.unfenceable || !sb.hostIface) throw new CoiError(ErrorCodes.NOT_PERMITTED, `cannot fence ${name}: ${sb.unfenceable ?? 'no interface name'}`);
    if (!sb.label) throw new CoiError(ErrorCodes.INVALID_INPUT, `cannot fence ${name}: ${sb.labelError ?? 'no network settings'}; its network is blocked`);
    const warnings: string[] = [];
    if (sb.labelMissing) warnings.push(`${name} records no network settings (made by an older COI?): restricted mode applies`);
    let resolved: Array<{ name: string; ips: string[]; error?: string }> = [];
    if (sb.label.mode === 'allowlist') {
      const a = await this.allowlistFor(sb.container, sb.label);
      await this.refresh(a, { reconcile: false });
      resolved = [...a.names.entries()].map(([n, s]) => ({ name: n, ips: s.current.map((k) => k.ip), ...(s.error ? { error: s.error } : {}) }));
      for (const r of resolved) if (r.error) warnings.push(`${r.name} could not be resolved (${r.error})${r.ips.length ? `; its last known addresses stay allowed: ${r.ips.join(', ')}` : ': it is not reachable'}`);
    }
    // A firewalld that would reject its DHCP, DNS or forwarded traffic is seen to before it starts.
    await this.firewalld?.check(this.bridgeNames(sb.bridge));
    const desired = await this.reconcile(`secure ${name}`);
    const problem = [...desired.blocked, ...desired.unfenced].find((p) => p.container === name);
    if (problem) throw new CoiError(ErrorCodes.NOT_PERMITTED, `cannot fence ${name}: ${problem.problem}; its network is blocked`, problem.remedy ? { remedy: problem.remedy } : {});
    if (!desired.fenced.includes(name)) throw new CoiError(ErrorCodes.INTERNAL, `the rules applied for ${name} do not include it`);
    if (sb.label.mode === 'allowlist' || sb.label.hosts) {
      // Written again at every start: the instance may be a new one under an old name.
      this.hostsWritten.delete(name);
      await this.writeHosts(name, sb.label).catch((e: unknown) => warnings.push(`could not write the allowed names into ${name}'s /etc/hosts: ${toCoiError(e).message}`));
    }
    this.o.log.info(`fenced ${name} (${sb.label.mode}, ${sb.hostIface}${sb.label.backend ? `, by ${sb.label.backend}` : ''})`);
    return { name, mode: sb.label.mode, hostIface: sb.hostIface, resolved, warnings };
  }

  // ── allowlists ─────────────────────────────────────────────────────────────

  /** Starts tracking new allowlist sandboxes (from the cache first) and forgets gone ones. */
  private async syncAllowlists(sandboxes: readonly ManagedSandbox[]): Promise<void> {
    const want = new Map<string, NetworkLabel>();
    for (const s of sandboxes) if (s.label?.mode === 'allowlist') want.set(s.container, s.label);
    for (const [c, a] of this.allowlists) {
      if (want.has(c)) continue;
      if (a.timer) clearTimeout(a.timer);
      this.allowlists.delete(c);
    }
    for (const [c, label] of want) {
      const had = this.allowlists.get(c);
      if (had && JSON.stringify(had.label) === JSON.stringify(label)) continue;
      // New here (a guard restart: start from the cache) or changed settings: resolve at once.
      const a = await this.allowlistFor(c, label);
      if (!a.refreshing) this.schedule(a, 0);
    }
    // Caches of sandboxes that are gone: nothing accumulates.
    const present = sandboxes.map((s) => s.container);
    for (const f of await staleCacheFiles(this.o.cacheDir, present)) await fs.rm(f, { force: true }).catch(() => undefined);
  }

  private async allowlistFor(container: string, label: NetworkLabel): Promise<Allowlist> {
    let a = this.allowlists.get(container);
    if (a && JSON.stringify(a.label) !== JSON.stringify(label)) {
      // Settings changed (a persistent sandbox relaunched with a new config): keep what is known of names still listed.
      for (const n of [...a.names.keys()]) if (!label.domains.includes(n)) a.names.delete(n);
      a.label = label;
    }
    if (!a) {
      const cached = (await readCache(this.o.cacheDir, container, this.now(), this.timing)) ?? new Map<string, NameState>();
      for (const n of [...cached.keys()]) if (!label.domains.includes(n)) cached.delete(n);
      a = { container, label, names: cached };
      this.allowlists.set(container, a);
    }
    return a;
  }

  private schedule(a: Allowlist, delaySec: number): void {
    if (this.stopped) return;
    if (a.timer) clearTimeout(a.timer);
    a.timer = setTimeout(() => {
      a.timer = undefined;
      void this.refresh(a, { reconcile: true }).catch((e: unknown) => this.o.log.warn(`refreshing the allowlist of ${a.container} failed: ${toCoiError(e).message}`));
    }, delaySec * 1000);
    a.timer.unref();
  }

  /** Resolves every name of an allowlist now, caches the result and schedules the next refresh. */
  private refresh(a: Allowlist, opts: { reconcile: boolean }): Promise<void> {
    if (a.refreshing) return a.refreshing;
    const run = async () => {
      const servers = this.o.resolvers?.length ? this.o.resolvers : a.label.dns;
      const before = JSON.stringify(allowedIps(a.names, this.timing).map((r) => r.ip).sort());
      const results = await Promise.all(
        a.label.domains.map(async (name) => {
          try {
            return { name, r: { answers: await this.o.resolve4(name, servers) } as const };
          } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            return { name, r: { error: code ? `${code}` : (e as Error).message } as const };
          }
        }),
      );
      const now = this.now();
      for (const { name, r } of results) a.names.set(name, nextNameState(a.names.get(name), r, now, this.timing));
      for (const n of [...a.names.keys()]) if (!a.label.domains.includes(n)) a.names.delete(n);
      if (results.some((x) => !('error' in x.r))) await writeCache(this.o.cacheDir, a.container, a.names, now).catch((e: unknown) => this.o.log.warn(`cannot cache the allowlist of ${a.container}: ${toCoiError(e).message}`));
      for (const { name, r } of results) if ('error' in r) this.o.log.warn(`allowlist of ${a.container}: ${name} did not resolve (${r.error})`);
      if (this.allowlists.get(a.container) !== a) return; // forgotten meanwhile
      this.schedule(a, refreshDelaySec(a.names, a.label.refreshMin, this.timing));
      const after = JSON.stringify(allowedIps(a.names, this.timing).map((r) => r.ip).sort());
      if (opts.reconcile) {
        // Element timeouts are renewed by every apply, so apply even when the addresses are the same.
        await this.reconcile(`allowlist refresh of ${a.container}${before !== after ? ' (addresses changed)' : ''}`).catch(() => undefined);
        // After the apply, and only with what it installed: a failed apply leaves /etc/hosts as it was.
        await this.writeHosts(a.container, a.label).catch((e: unknown) => this.o.log.warn(`cannot write /etc/hosts of ${a.container}: ${toCoiError(e).message}`));
      }
    };
    a.refreshing = run().finally(() => (a.refreshing = undefined));
    return a.refreshing;
  }

  /**
   * Writes the sandbox's `[[network.hosts]]` and its allowlist names into its
   * /etc/hosts when they changed since the last write. Names appear only with
   * addresses the installed rules already allow (see hostsEntries).
   */
  private writeHosts(container: string, label: NetworkLabel): Promise<void> {
    const prev = this.hostsWriting.get(container) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.writeHostsNow(container, label));
    this.hostsWriting.set(container, next);
    const done = () => {
      if (this.hostsWriting.get(container) === next) this.hostsWriting.delete(container);
    };
    next.then(done, done);
    return next;
  }

  private async writeHostsNow(container: string, label: NetworkLabel): Promise<void> {
    const a = this.allowlists.get(container);
    const names = a ? hostsEntries(a.names, this.applied.get(container) ?? new Set()) : [];
    const entries = [...staticHostsEntries(label.hosts), ...names];
    const key = entries.map((e) => `${e.ip} ${e.name}`).join('\n');
    if (this.hostsWritten.get(container) === key) return;
    const file = await this.o.incus.pullFile(container, '/etc/hosts').catch(() => undefined);
    const current = file && file.type === 'file' ? file.content.toString('utf8') : '127.0.0.1\tlocalhost\n';
    const next = mergeHosts(current, entries);
    if (next !== current) await this.o.incus.pushFile(container, '/etc/hosts', Buffer.from(next), { uid: 0, gid: 0, mode: 0o644 });
    this.hostsWritten.set(container, key);
  }

  // ── events, status, orphans ────────────────────────────────────────────────

  private packet(e: PacketEvent): void {
    // Only our sandboxes' lines: a scoped guard leaves the host guard's alone, and vice versa.
    if (!this.fenced.has(e.container) && !this.lastDesired?.blocked.some((b) => sandboxKey(b.container) === e.container)) return;
    this.o.onPacket?.(e);
  }

  async installed(): Promise<InstalledRules> {
    return listInstalledRules(this.nft, this.tables);
  }

  async status(): Promise<{ installed: InstalledRules; orphans: string[]; problems: Problem[]; lastApply?: ApplyReport; recentApplies: ApplyReport[]; pending: string[] }> {
    const [installed, live] = await Promise.all([this.installed(), this.liveContainers()]);
    const orphans = findOrphans(installed, live).map((s) => s.key);
    const problems = this.lastDesired ? [...this.lastDesired.blocked, ...this.lastDesired.unfenced] : [];
    return {
      installed,
      orphans,
      problems,
      ...(this.lastApply ? { lastApply: this.lastApply } : {}),
      recentApplies: [...this.recentApplies],
      pending: this.queued ? listReasons(this.queuedReasons) : [],
    };
  }

  private async liveContainers(): Promise<string[]> {
    const all = await this.o.incus.listInstances({ recursion: 1, timeoutMs: 30_000 });
    return all.filter((i) => inScope(i, this.o.scope)).map((i) => i.name);
  }

  /** firewalld's zones and policies of this scope whose sandbox no longer exists, as `firewalld <kind> <name>`, by container. */
  private async firewalldOrphans(live: readonly string[]): Promise<Array<{ container: string; objects: string[] }>> {
    if (!this.fwSandboxes) return [];
    const objects = await this.fwSandboxes.objects({ relist: true }).catch(() => new Map());
    const alive = new Set(live);
    return [...objects.entries()]
      .filter(([c]) => !alive.has(c))
      .map(([container, i]) => ({ container, objects: [...(i.zone ? [`firewalld zone ${i.names.zone}`] : []), ...(i.policy ? [`firewalld policy ${i.names.policy}`] : [])] }));
  }

  /** Rules, firewalld objects and caches of sandboxes that no longer exist; removed unless dryRun. */
  async cleanOrphans(dryRun: boolean): Promise<{ removed: Array<{ container: string; objects: string[] }>; caches: string[] }> {
    const [installed, live] = await Promise.all([this.installed(), this.liveContainers()]);
    const orphans = findOrphans(installed, live);
    const fwOrphans = await this.firewalldOrphans(live);
    const caches = await staleCacheFiles(this.o.cacheDir, live);
    if (!dryRun) {
      if (orphans.length > 0 || fwOrphans.length > 0) {
        this.fwRelist = true;
        await this.reconcile('coi clean --orphans');
      }
      for (const f of caches) await fs.rm(f, { force: true });
      const nowLive = await this.liveContainers();
      const still = [...findOrphans(await this.installed(), nowLive).map((s) => s.key), ...(await this.firewalldOrphans(nowLive)).map((o) => o.container)];
      if (still.length > 0) throw new CoiError(ErrorCodes.INTERNAL, `rules of ${[...new Set(still)].join(', ')} are still installed after the clean-up`);
    }
    const byContainer = new Map<string, string[]>();
    for (const o of [...orphans.map((x) => ({ container: x.key, objects: x.objects })), ...fwOrphans]) byContainer.set(o.container, [...(byContainer.get(o.container) ?? []), ...o.objects]);
    return { removed: [...byContainer.entries()].map(([container, objects]) => ({ container, objects })), caches };
  }
}

interface Reasons {
  first: string[];
  count: number;
}

function addReason(r: Reasons, reason: string): void {
  if (r.first.length < MAX_REASONS) r.first.push(reason);
  r.count++;
}

function listReasons(r: Reasons): string[] {
  return r.count > r.first.length ? [...r.first, `and ${r.count - r.first.length} more`] : [...r.first];
}

/** Whether a process is alive and is a `coi guard run` (not some other process that reused the pid). */
async function isGuardProcess(pid: number): Promise<boolean> {
  try {
    const cmdline = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmdline.includes('guard') && cmdline.includes('run');
  } catch {
    return false;
  }
}
