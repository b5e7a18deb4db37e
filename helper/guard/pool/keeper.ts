/**
 * The warm pool, kept by the guard: for each demand (a workspace and the
 * settings fixed at start, see pool/spec.ts) it keeps `size` members started,
 * fenced with the strictest network rules and holding nothing of any
 * workspace, so a launch only has to attach the workspace and label them.
 *
 * - Demand comes from launches (`guard/poolTake`, sent by every launch whose
 *   `[pool] size` is set) and is found again after a restart from the
 *   members' own labels; `coi clean` drains it.
 * - A member is created labelled, fenced by the guard before it starts (the
 *   same fail-closed handshake as a sandbox), started, waited for, and only
 *   then marked idle. Any failure deletes it. A guard killed meanwhile leaves
 *   a `filling` member whose filler is dead: the next sweep, or `coi clean`,
 *   deletes it.
 * - Taking is serialised here: a member is handed out once, and never comes
 *   back. Members of an image the alias no longer points to are deleted (on
 *   image events, at every sweep, and at the take itself), so a launch never
 *   gets an outdated image.
 * - Limits: at most `maxMembers` untaken members in all, and none is started
 *   while the host has less than `minFreeMiB` of memory available. At the
 *   cap, the idle member of the workspace least recently used makes room for
 *   one used more recently: the pool serves the workspaces in use now, not
 *   the first ones it saw. Members are made one at a time, so two workspaces
 *   filling at once cannot both take the last place.
 */
import { promises as fs } from 'node:fs';
import { toCoiError } from '../../errors';
import type { IncusClient } from '../../incus/client';
import { lifecycleOf } from '../../incus/events';
import type { InstanceFull, RawEvent } from '../../incus/types';
import type { Log } from '../../log';
import { waitBooted } from '../../sandbox/boot';
import { LABELS } from '../../sandbox/labels';
import { pidAlive } from '../../sandbox/lock';
import { MAX_SLOTS, slotOf } from '../../sandbox/naming';
import type { Adoption } from '../../pool/protocol';
import { buildMember, Member, memberOf, POOL_LABELS, PoolSpec, poolKey } from '../../pool/spec';

export interface PoolKeeperOptions {
  incus: IncusClient;
  log: Log;
  /** The guard's scope: members are labelled with it, and only its members are kept. */
  scope: string;
  /** Set when the guard's socket is not the default (a test's guard): recorded on members. */
  guardSocket?: string;
  /** The network handshake: resolves once the member's rules are in place (`known`: the instance as just updated, not read again). */
  secure: (name: string, known?: InstanceFull) => Promise<unknown>;
  /** Leaves the instance-updated event of the take's own update to the secure that follows it (one rules apply per take). */
  holdUpdates: (name: string) => () => void;
  /** Has the network stand in the take's update for the listing until it ends, so the fence need not wait for it. */
  expectUpdate: (name: string, now: InstanceFull) => () => void;
  /** How long a take delays the refill it causes, so the launch that took is not slowed by it (ms; an ended sandbox refills sooner). */
  refillDelayMs?: number;
  /** Whether this guard keeps the pool now (the primary, or a scoped test guard). */
  active: () => boolean;
  maxMembers?: number;
  minFreeMiB?: number;
  bootTimeoutSec?: number;
  alive?: (pid: number) => boolean;
  /** MemAvailable in MiB; /proc/meminfo by default. */
  memAvailableMiB?: () => Promise<number | undefined>;
}

interface Demand {
  spec: PoolSpec;
  size: number;
  /** When a launch or `coi pool warm` last asked for it (0: found again from labels after a restart). */
  wantedAt: number;
}

const SWEEP_MS = 60_000;
const REFILL_DELAY_MS = 1_500;
const IMAGE_EVENTS = /^image-(alias-(created|updated|deleted|renamed)|deleted|created)$/;

export class PoolKeeper {
  private readonly demands = new Map<string, Demand>();
  private readonly filling = new Map<string, Promise<void>>();
  /** Fills run one after another (see the limits above). */
  private fillQueue: Promise<void> = Promise.resolve();
  /** Members this process is creating now (their names). */
  private readonly making = new Set<string>();
  /**
   * Members and taken sandboxes this process is deleting now. One delete per
   * instance: Incus serialises concurrent force-deletes of one instance behind
   * each other's stop and delete, and under load that took a minute (an image
   * rebuild sends several events, each a sweep).
   */
  private readonly deleting = new Map<string, Promise<void>>();
  /** The sweep running now, and whether another event asked for one meanwhile. */
  private sweeping: Promise<void> | undefined;
  private sweepAgain = false;
  private takeChain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private problems: string[] = [];
  private rediscovered = false;
  readonly maxMembers: number;
  readonly minFreeMiB: number;
  private readonly alive: (pid: number) => boolean;

  constructor(private readonly o: PoolKeeperOptions) {
    this.maxMembers = o.maxMembers ?? 8;
    this.minFreeMiB = o.minFreeMiB ?? 1024;
    this.alive = o.alive ?? pidAlive;
  }

  start(): void {
    this.timer = setInterval(() => void this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  onIncusEvent(e: RawEvent): void {
    if (!this.o.active()) return;
    const lc = lifecycleOf(e);
    if (!lc) return;
    if (IMAGE_EVENTS.test(lc.action)) {
      this.o.log.debug(`pool: ${lc.action} ${lc.source}: checking for outdated members`);
      void this.sweep();
    } else if (/^instance-(stopped|shutdown|deleted)$/.test(lc.action) && this.demands.size > 0) {
      void this.sweep();
    }
  }

  private async members(): Promise<Member[]> {
    const all = await this.o.incus.listInstances({ recursion: 1, timeoutMs: 30_000 });
    return all.map(memberOf).filter((m): m is Member => m !== undefined && m.scope === this.o.scope);
  }

  /**
   * Deletes what must go, finds demand again from labels, refills. Sweeps
   * asked for while one runs fold into one more after it.
   */
  sweep(): Promise<void> {
    if (this.sweeping) {
      this.sweepAgain = true;
      return this.sweeping;
    }
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false;
        await this.sweepOnce();
      } while (this.sweepAgain && !this.stopped);
    })().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    if (this.stopped || !this.o.active()) return;
    try {
      const members = await this.members();
      const current = new Map<string, string | undefined>();
      const fpOf = async (image: string) => {
        if (!current.has(image)) current.set(image, await this.o.incus.imageAlias(image).catch(() => undefined));
        return current.get(image);
      };
      const found = new Map<string, { spec: PoolSpec; n: number }>();
      for (const m of members) {
        let why: string | undefined;
        if (m.state === 'filling' && !this.making.has(m.name) && !(m.fillerPid !== undefined && m.fillerPid !== process.pid && this.alive(m.fillerPid))) why = 'its filling was interrupted';
        else if (m.state === 'idle' && m.status !== 'Running') why = `it is ${m.status.toLowerCase()}`;
        else if (m.state === 'idle' && m.spec && (await fpOf(m.spec.image)) !== m.fingerprint) why = `its image ${m.spec.image} was rebuilt`;
        else if (m.state === 'idle' && !m.spec) why = 'its labels do not parse';
        else if (m.state === 'taken' && !m.adopted && !(m.launcherPid !== undefined && this.alive(m.launcherPid))) why = 'the launch that took it died';
        if (why) {
          await this.remove(m.name, why);
          continue;
        }
        if (m.state !== 'taken' && m.spec) {
          const f = found.get(m.key) ?? { spec: m.spec, n: 0 };
          f.n++;
          found.set(m.key, f);
        }
      }
      // A restarted guard knows its demand again from what is there: once, at its first sweep
      // (later, a member listed just before a drain would bring back the demand the drain ended).
      if (!this.rediscovered) for (const [key, f] of found) if (!this.demands.has(key)) this.demands.set(key, { spec: f.spec, size: f.n, wantedAt: 0 });
      this.rediscovered = true;
      for (const key of this.demands.keys()) void this.fill(key);
    } catch (e) {
      this.o.log.warn(`pool: sweep failed: ${toCoiError(e).message}`);
    }
  }

  /** Whether the keeper is deleting this instance now (the reaper then leaves it alone). */
  removing(name: string): boolean {
    return this.deleting.has(name);
  }

  private remove(name: string, why: string): Promise<void> {
    const running = this.deleting.get(name);
    if (running) return running;
    const p = (async () => {
      try {
        await this.o.incus.deleteInstance(name, { force: true });
        this.o.log.info(`pool: deleted ${name}: ${why}`);
      } catch (e) {
        this.o.log.warn(`pool: could not delete ${name} (${why}): ${toCoiError(e).message}`);
      } finally {
        this.deleting.delete(name);
      }
    })();
    this.deleting.set(name, p);
    return p;
  }

  /** Records the demand (size 0 forgets it) and starts filling. */
  want(spec: PoolSpec, size: number): void {
    const key = poolKey(spec);
    if (size === 0) {
      this.demands.delete(key);
      return;
    }
    this.demands.set(key, { spec, size, wantedAt: Date.now() });
    void this.fill(key);
  }

  /**
   * Hands `name` over to the caller (pid), once; then refills. With `adopt`
   * (vetted by the caller), the same update makes it the caller's sandbox and
   * the member is re-fenced before this answers; a member that cannot be
   * fenced is deleted.
   */
  take(spec: PoolSpec, size: number, name: string, takerPid: number, adopt?: Adoption): Promise<{ taken: boolean; reason?: string; mode?: string; warnings?: string[] }> {
    const run = async (): Promise<{ taken: boolean; reason?: string; fence?: Promise<unknown> }> => {
      const key = poolKey(spec);
      // Both reads at once, the instance without its state (nothing here needs it): the launch waits for them.
      const [inst, fp] = await Promise.all([this.o.incus.getInstance(name, { timeoutMs: 30_000, state: false }).catch(() => undefined), this.o.incus.imageAlias(spec.image).catch(() => undefined)]);
      const m = inst ? memberOf(inst) : undefined;
      if (!inst || !m || m.key !== key || m.scope !== this.o.scope) return { taken: false, reason: `${name} is not a member of this pool` };
      if (m.state !== 'idle') return { taken: false, reason: `${name} is ${m.state === 'taken' ? 'taken already' : 'not ready yet'}` };
      if (m.status !== 'Running') return { taken: false, reason: `${name} is ${m.status.toLowerCase()}` };
      if (fp !== m.fingerprint) {
        await this.remove(name, `its image ${spec.image} was rebuilt`);
        return { taken: false, reason: `${name} was made from an image ${spec.image} no longer points to` };
      }
      const config = { [LABELS.launcher]: String(takerPid), [LABELS.phase]: 'creating', ...(adopt?.config ?? {}), [POOL_LABELS.state]: 'taken' };
      const devices = adopt && Object.keys(adopt.devices).length > 0 ? adopt.devices : undefined;
      const now = { ...inst, config: { ...inst.config, ...config }, devices: { ...inst.devices, ...(devices ?? {}) } };
      // With an adoption, the member is fenced for its sandbox while the update runs (the rules of the
      // updated member; until they are in, it keeps the strictest), and the update's event needs no
      // apply of its own. The launch gets it when both have ended.
      const release = adopt ? this.o.holdUpdates(name) : undefined;
      const updated = adopt ? this.o.expectUpdate(name, now) : undefined;
      const fence = adopt ? this.o.secure(name, now) : undefined;
      fence?.catch(() => undefined);
      try {
        await this.o.incus.run('PATCH', this.o.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config, ...(devices ? { devices } : {}) });
      } catch (e) {
        updated?.();
        release?.();
        // Its rules may be the sandbox's already, its labels a member's: it goes.
        if (fence) await this.remove(name, `its take failed: ${toCoiError(e).message}`);
        throw e;
      }
      updated?.();
      this.o.log.info(`pool: ${name} taken by pid ${takerPid}`);
      return { taken: true, ...(fence ? { fence } : {}) };
    };
    const p = this.takeChain.then(run, run);
    this.takeChain = p.catch(() => undefined);
    return p
      .then(async ({ fence, ...r }) => {
        if (!r.taken || !fence) return r;
        try {
          const s = (await fence) as { mode?: string; warnings?: string[] } | undefined;
          return { ...r, ...(s?.mode ? { mode: s.mode } : {}), warnings: s?.warnings ?? [] };
        } catch (e) {
          await this.remove(name, `it could not be fenced for its sandbox: ${toCoiError(e).message}`);
          throw e;
        }
      })
      .finally(() => this.wantLater(spec, size));
  }

  /**
   * The refill a take causes waits a moment: creating and starting a member
   * takes both cores of a small machine for a second, which the launch that
   * took would otherwise share. The sweep after an ended sandbox (its
   * instance-deleted event) refills sooner.
   */
  private wantLater(spec: PoolSpec, size: number): void {
    const delay = this.o.refillDelayMs ?? REFILL_DELAY_MS;
    const key = poolKey(spec);
    this.demands.set(key, { spec, size, wantedAt: Date.now() });
    if (delay <= 0) return void this.fill(key);
    const t = setTimeout(() => {
      if (this.demands.has(key)) void this.fill(key);
    }, delay);
    t.unref();
  }

  /**
   * Deletes a sandbox taken by `takerPid` for an ephemeral `coi run` whose
   * connection closed: the command ended, or the coi process died. Only if it
   * is still that taker's (the name may hold another container by now).
   */
  async endTaken(name: string, takerPid: number): Promise<void> {
    const inst = await this.o.incus.getInstance(name, { timeoutMs: 30_000 }).catch(() => undefined);
    const m = inst ? memberOf(inst) : undefined;
    if (!m || m.state !== 'taken' || m.launcherPid !== takerPid || m.scope !== this.o.scope) return;
    await this.remove(name, `its coi run (pid ${takerPid}) ended`);
  }

  /** Forgets the demand (of one prefix, or all) and deletes untaken members. */
  async drain(prefix?: string): Promise<string[]> {
    for (const [key, d] of [...this.demands]) if (prefix === undefined || d.spec.prefix === prefix) this.demands.delete(key);
    await Promise.all([...this.filling.values()].map((p) => p.catch(() => undefined)));
    const deleted: string[] = [];
    for (const m of await this.members()) {
      if (m.state === 'taken' || (prefix !== undefined && !m.name.startsWith(prefix))) continue;
      await this.remove(m.name, 'the pool was drained (coi clean)');
      deleted.push(m.name);
    }
    return deleted;
  }

  async status(): Promise<{ pools: { key: string; workspaceHash: string; image: string; size: number; idle: string[]; filling: string[] }[]; limits: { maxMembers: number; minFreeMiB: number }; problems: string[] }> {
    const members = await this.members();
    const keys = new Set([...this.demands.keys(), ...members.filter((m) => m.state !== 'taken').map((m) => m.key)]);
    const pools = [...keys].map((key) => {
      const d = this.demands.get(key);
      const spec = d?.spec ?? members.find((m) => m.key === key)?.spec;
      const mine = members.filter((m) => m.key === key);
      return {
        key,
        workspaceHash: spec?.workspaceHash ?? '',
        image: spec?.image ?? '',
        size: d?.size ?? 0,
        idle: mine.filter((m) => m.state === 'idle').map((m) => m.name),
        filling: mine.filter((m) => m.state === 'filling').map((m) => m.name),
      };
    });
    return { pools, limits: { maxMembers: this.maxMembers, minFreeMiB: this.minFreeMiB }, problems: [...this.problems] };
  }

  /** One filling loop per demand at a time, queued behind the others'. */
  private fill(key: string): Promise<void> {
    const running = this.filling.get(key);
    if (running) return running;
    const p = this.fillQueue
      .then(() => this.fillNow(key))
      .catch((e: unknown) => this.o.log.warn(`pool: filling failed: ${toCoiError(e).message}`))
      .finally(() => this.filling.delete(key));
    this.fillQueue = p;
    this.filling.set(key, p);
    return p;
  }

  private async fillNow(key: string): Promise<void> {
    for (let attempts = 0; attempts < 3 * MAX_SLOTS; attempts++) {
      const d = this.demands.get(key);
      if (!d || this.stopped || !this.o.active()) return;
      const members = await this.members();
      const untaken = members.filter((m) => m.state !== 'taken');
      const mine = untaken.filter((m) => m.key === key).length;
      if (mine >= d.size) return;
      const victim = untaken.length >= this.maxMembers ? this.leastRecentlyWanted(untaken, d.wantedAt) : undefined;
      if (victim) {
        await this.remove(victim.name, `room for a workspace used more recently (the host keeps at most ${this.maxMembers} warm containers, COI_POOL_MAX)`);
        continue;
      }
      const problem = await this.refusal(untaken.length);
      this.problems = problem ? [problem] : [];
      if (problem) {
        this.o.log.warn(`pool: not filling: ${problem}`);
        return;
      }
      const ok = await this.makeMember(d.spec);
      if (ok === 'full') return;
    }
  }

  /**
   * The idle member of the demand wanted longest ago, and before `before`; none when all are newer.
   * The filling demand's own members are never chosen: they were wanted exactly then.
   */
  private leastRecentlyWanted(untaken: Member[], before: number): Member | undefined {
    const wantedAt = (m: Member) => this.demands.get(m.key)?.wantedAt ?? Number.NEGATIVE_INFINITY;
    let best: Member | undefined;
    for (const m of untaken) {
      if (m.state !== 'idle' || this.deleting.has(m.name) || wantedAt(m) >= before) continue;
      if (!best || wantedAt(m) < wantedAt(best)) best = m;
    }
    return best;
  }

  private async refusal(untaken: number): Promise<string | undefined> {
    if (untaken >= this.maxMembers) return `the host keeps at most ${this.maxMembers} warm containers (COI_POOL_MAX)`;
    const free = await (this.o.memAvailableMiB ?? memAvailableMiB)();
    if (free !== undefined && free < this.minFreeMiB) return `only ${free} MiB of memory available, less than ${this.minFreeMiB} MiB (COI_POOL_MIN_FREE_MIB)`;
    return undefined;
  }

  /** Creates, fences, starts and waits for one member in the workspace's lowest free slot. */
  private async makeMember(spec: PoolSpec): Promise<'made' | 'failed' | 'full'> {
    const fingerprint = await this.o.incus.imageAlias(spec.image);
    if (!fingerprint) {
      this.problems = [`the image ${spec.image} does not exist`];
      this.demands.delete(poolKey(spec));
      return 'full';
    }
    const all = await this.o.incus.listInstances({ timeoutMs: 30_000 });
    const used = new Set(all.map((i) => slotOf(spec.prefix, spec.workspaceHash, i.name)).filter((s): s is number => s !== undefined));
    let slot = 0;
    for (let s = 1; s <= MAX_SLOTS; s++) if (!used.has(s)) { slot = s; break; }
    if (slot === 0) return 'full';
    const name = `${spec.prefix}${spec.workspaceHash}-${slot}`;
    const t0 = Date.now();
    this.making.add(name);
    let created = false;
    try {
      await this.o.incus.createInstance(buildMember({ name, spec, fingerprint, fillerPid: process.pid, scope: this.o.scope, ...(this.o.guardSocket ? { guardSocket: this.o.guardSocket } : {}), now: new Date() }), { timeoutMs: 300_000 });
      created = true;
      await this.o.secure(name);
      await this.o.incus.setState(name, 'start', { timeoutMs: 120_000 });
      await waitBooted(this.o.incus, name, this.o.bootTimeoutSec ?? 120);
      await this.o.incus.run('PATCH', this.o.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [POOL_LABELS.state]: 'idle' } });
      this.o.log.info(`pool: ${name} ready in ${Date.now() - t0} ms`);
      return 'made';
    } catch (e) {
      this.o.log.warn(`pool: could not make ${name}: ${toCoiError(e).message}`);
      if (created) await this.remove(name, 'its filling failed');
      return 'failed';
    } finally {
      this.making.delete(name);
    }
  }
}

async function memAvailableMiB(): Promise<number | undefined> {
  const text = await fs.readFile('/proc/meminfo', 'utf8').catch(() => '');
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(text);
  return m ? Math.floor(Number(m[1]) / 1024) : undefined;
}
