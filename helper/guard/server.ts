/**
 * The guard: one root process per host that outlives every VS Code window and
 * CLI process. It owns what needs privilege (network rules, the monitor, limits,
 * the audit log — added by later features) and relays events to clients.
 *
 * Clients reach it on a unix socket that is never shared into a container. The
 * socket is root:<admin group> 0660 in a 0755 root directory, and every
 * connection's peer is checked again (uid 0 or a member of the admin group)
 * before it may speak.
 *
 * It holds no state that Incus or files do not already hold, so a restart
 * (crash, upgrade, kill -9) loses nothing: clients reconnect and resubscribe.
 */
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc';
import { CoiError, ErrorCodes } from '../errors';
import { IncusClient } from '../incus/client';
import { IncusEventStream, lifecycleOf } from '../incus/events';
import type { RawEvent } from '../incus/types';
import type { Log } from '../log';
import {
  EventTopic,
  GUARD_CAPABILITIES,
  GuardAllowIdmap,
  GuardCleanOrphans,
  GuardEvent,
  GuardEventNotification,
  GuardInfo,
  GuardNetworkStatus,
  GuardSecureSandbox,
  GuardShutdown,
  GuardSubscribe,
  IncusEvent,
  MonitorSnapshot,
} from '../protocol/methods';
import { notify, Router } from '../protocol/rpc';
import { createConnection } from '../rpc/connection';
import { COI_BUILD, COI_VERSION } from '../version';
import { incusStatusOf } from '../core/info';
import { inScope } from './network/desired';
import type { PacketEvent } from './network/kmsg';
import { NetworkController, NetworkControllerOptions } from './network/controller';
import { PeerCredentials, peerCredentials } from './peer';
import { DeadlineKeeper } from './deadlines';
import { tryBecomePrimary } from './primary';
import type { Lock } from '../sandbox/lock';
import { MonitorSupervisor } from './monitor/supervisor';
import { Reaper } from './reaper';
import { PoolKeeper } from './pool/keeper';
import { vetAdoption, vetPoolSpec } from './pool/vet';
import { GuardPoolDrain, GuardPoolStatus, GuardPoolTake } from '../pool/protocol';
import { DEFAULT_GUARD_SOCKET } from './paths';
import { delegateId } from './subid';

export interface GuardOptions {
  socketPath: string;
  incus: IncusClient;
  log: Log;
  /** Group id whose members may connect besides root; undefined = root only. */
  adminGid?: number;
  /** Where the host lock of the primary guard lives; null: never primary. */
  primaryLockDir?: string | null;
  /** Where subordinate id delegations live; tests point these elsewhere. */
  subuidFile?: string;
  subgidFile?: string;
  /** Replaceable for tests that run the guard in-process. */
  identify?: (socket: net.Socket) => Promise<PeerCredentials | undefined>;
  onShutdownRequested?: () => void;
  /**
   * The network fence. Absent: the guard fences nothing and says so (no
   * "network" capability), and launches that need it fail.
   */
  network?: Omit<NetworkControllerOptions, 'incus' | 'log' | 'onPacket'>;
  /** Warm pool limits (COI_POOL_MAX, COI_POOL_MIN_FREE_MIB); the pool needs the network fence. */
  pool?: { maxMembers?: number; minFreeMiB?: number };
  /** The monitor (on unless `enabled: false`); `only` limits it to some sandboxes (tests on a shared host). */
  monitor?: { enabled?: boolean; only?: (name: string) => boolean; execEvents?: boolean; env?: NodeJS.ProcessEnv };
}

interface Client {
  id: number;
  conn: MessageConnection;
  peer: PeerCredentials;
  topics: Set<EventTopic>;
  /** Run once when the client goes (its connection closed, or it died). */
  onGone: (() => void)[];
}

export class GuardServer {
  private server: net.Server | undefined;
  private readonly clients = new Map<number, Client>();
  private nextId = 1;
  private events: IncusEventStream | undefined;
  private readonly startedAt = new Date();
  private readonly reaper: Reaper;
  private readonly deadlines: DeadlineKeeper;
  private primary: Lock | undefined;
  private primaryTimer: NodeJS.Timeout | undefined;

  private async claimPrimary(): Promise<void> {
    if (this.primary || this.scoped || this.opts.primaryLockDir === null) return;
    this.primary = await tryBecomePrimary(this.opts.primaryLockDir);
    if (!this.primary) return;
    if (this.primaryTimer) clearInterval(this.primaryTimer);
    this.opts.log.info('holding the host lock: reaping ended sandboxes and enforcing deadlines');
    if (this.events?.connected) {
      void this.reaper.sweep();
      void this.deadlines.sync();
    }
  }

  readonly network: NetworkController | undefined;
  readonly monitor: MonitorSupervisor | undefined;
  readonly pool: PoolKeeper | undefined;
  private stopping = false;
  /** A test's guard (COI_GUARD_SCOPE) acts on its own scope only, and never takes the host lock. */
  private readonly scoped: boolean;

  /** Host-wide duties: the primary guard's, or a scoped guard's for its own scope. */
  private get dutiful(): boolean {
    return this.primary !== undefined || this.scoped;
  }

  constructor(private readonly opts: GuardOptions) {
    const scope = opts.network?.scope ?? '';
    this.scoped = scope !== '';
    if (opts.monitor?.enabled !== false) {
      this.monitor = new MonitorSupervisor({
        incus: opts.incus,
        log: opts.log,
        publish: (event) => this.broadcast({ topic: 'threat', event }),
        socketPath: opts.socketPath,
        ...(opts.monitor?.only ? { only: opts.monitor.only } : {}),
        ...(opts.monitor?.execEvents !== undefined ? { execEvents: opts.monitor.execEvents } : {}),
        ...(opts.monitor?.env ? { env: opts.monitor.env } : {}),
      });
    }
    // A scoped guard (a test's) reaps only its own scope's sandboxes; the host's guard every managed one.
    // A sandbox the monitor is killing is stopped first and deleted after its forensic copy: not the Reaper's.
    this.reaper = new Reaper(opts.incus, opts.log, undefined, scope ? (i) => inScope(i, scope) : undefined, (name) => (this.monitor?.holds(name) ?? false) || (this.pool?.removing(name) ?? false));
    this.deadlines = new DeadlineKeeper(opts.incus, opts.log, (n) => this.broadcast({ topic: 'guard', event: n }));
    if (opts.network) {
      this.network = new NetworkController({ ...opts.network, incus: opts.incus, log: opts.log, onPacket: (e) => this.relayPacket(e) });
      const network = this.network;
      this.pool = new PoolKeeper({
        incus: opts.incus,
        log: opts.log,
        scope,
        ...(opts.socketPath !== DEFAULT_GUARD_SOCKET ? { guardSocket: opts.socketPath } : {}),
        secure: (name, known) => network.secure(name, known),
        holdUpdates: (name) => network.holdUpdates(name),
        expectUpdate: (name, now) => network.expectUpdate(name, now),
        // One keeper per scope: the primary guard's, or a test guard's for its own scope.
        active: () => this.dutiful,
        ...(opts.pool ?? {}),
      });
    }
  }

  async start(): Promise<void> {
    await this.claimSocket();
    // Rules first: sandboxes that changed while no guard ran are fenced before anyone is answered.
    await this.network?.start();
    await this.claimPrimary();
    if (!this.primary && !this.scoped && this.opts.primaryLockDir !== null) {
      this.opts.log.info('another guard holds the host lock: this one serves and relays only, and takes over if that guard dies');
      // A primary that dies (kill -9, crash) must not leave the host without one.
      this.primaryTimer = setInterval(() => void this.claimPrimary(), 2_000);
      this.primaryTimer.unref();
    }
    this.events = this.opts.incus.events({ types: ['lifecycle'], allProjects: true, onLog: (m) => this.opts.log.debug(m) });
    this.events.on('event', (e) => {
      this.monitor?.onIncusEvent(e);
      this.relayIncus(e);
      this.network?.onIncusEvent(e);
      if (!this.dutiful) return;
      this.pool?.onIncusEvent(e);
      this.reaper.onEvent(e);
      this.deadlines.onEvent(e);
    });
    this.events.on('connected', () => {
      // Whatever changed while nobody watched (guard down, events lost) is reconciled and reaped now.
      this.network?.onEventsConnected();
      if (this.dutiful) {
        void this.pool?.sweep();
        void this.reaper.sweep();
        void this.deadlines.sync();
      }
      // Whatever started while nobody watched is watched.
      void this.monitor?.sweep();
      this.broadcast({ topic: 'guard', event: { kind: 'events-connected', message: 'connected to Incus events' } });
    });
    this.events.on('disconnected', () => this.broadcast({ topic: 'guard', event: { kind: 'events-lost', message: 'lost Incus events; reconnecting' } }));

    const server = net.createServer((socket) => void this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.opts.log.error(`guard socket error: ${e.message}`));
    // Sandboxes that run now are watched from here on, whatever the events say later.
    await this.monitor?.start();
    this.pool?.start();
    await fs.chmod(this.opts.socketPath, this.opts.adminGid === undefined ? 0o600 : 0o660);
    if (this.opts.adminGid !== undefined && process.getuid?.() === 0) {
      await fs.chown(this.opts.socketPath, 0, this.opts.adminGid);
    }
    this.opts.log.info(`guard ${COI_VERSION} listening on ${this.opts.socketPath} (pid ${process.pid})`);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.broadcast({ topic: 'guard', event: { kind: 'stopping', message: 'guard is stopping' } });
    this.events?.close();
    this.network?.stop();
    this.pool?.stop();
    this.deadlines.stop();
    if (this.primaryTimer) clearInterval(this.primaryTimer);
    await this.primary?.release();
    await this.monitor?.stop();
    for (const c of this.clients.values()) c.conn.dispose();
    this.clients.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await fs.unlink(this.opts.socketPath).catch(() => undefined);
  }

  /**
   * Makes the socket path ours: refuses when another guard answers there, and
   * removes a stale socket file a crashed guard left behind.
   */
  private async claimSocket(): Promise<void> {
    await fs.mkdir(path.dirname(this.opts.socketPath), { recursive: true, mode: 0o755 });
    const alive = await new Promise<boolean>((resolve) => {
      const s = net.connect(this.opts.socketPath);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (alive) {
      throw new CoiError(ErrorCodes.ALREADY_EXISTS, `a guard is already running on ${this.opts.socketPath}`, {
        remedy: { title: 'Check it', shell: 'coi guard status' },
      });
    }
    await fs.unlink(this.opts.socketPath).catch(() => undefined);
  }

  private authorized(peer: PeerCredentials): boolean {
    return peer.uid === 0 || (this.opts.adminGid !== undefined && peer.gids.includes(this.opts.adminGid));
  }

  private async accept(socket: net.Socket): Promise<void> {
    socket.on('error', () => undefined);
    const peer = await (this.opts.identify ?? peerCredentials)(socket).catch(() => undefined);
    if (!peer || !this.authorized(peer)) {
      this.opts.log.warn(`refused a guard connection from ${peer ? `uid ${peer.uid} pid ${peer.pid}` : 'an unidentified peer'}`);
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    const conn = createConnection(socket, socket, { log: this.opts.log });
    const client: Client = { id, conn, peer, topics: new Set(), onGone: [] };
    this.clients.set(id, client);
    const drop = () => {
      if (!this.clients.delete(id)) return;
      this.opts.log.debug(`client ${id} (pid ${peer.pid}) disconnected`);
      // A guard that is stopping drops its clients, not their sandboxes: those are theirs still.
      if (!this.stopping) for (const f of client.onGone.splice(0)) f();
    };
    conn.onClose(drop);
    socket.on('close', drop);
    this.router(client).attach(conn);
    conn.listen();
    this.opts.log.debug(`client ${id} connected: uid ${peer.uid} pid ${peer.pid}`);
  }

  private router(client: Client): Router {
    return new Router(this.opts.log)
      .onRequest(GuardInfo, async () => ({
        guard: { version: COI_VERSION, pid: process.pid, node: process.version, ...(COI_BUILD ? { build: COI_BUILD } : {}) },
        startedAt: this.startedAt.toISOString(),
        socket: this.opts.socketPath,
        clients: this.clients.size,
        subscriptions: [...this.clients.values()].reduce((n, c) => n + c.topics.size, 0),
        incus: await incusStatusOf(this.opts.incus),
        eventsConnected: this.events?.connected ?? false,
        primary: this.primary !== undefined,
        capabilities: this.network ? [GUARD_CAPABILITIES.network] : [],
      }))
      .onRequest(GuardSecureSandbox, async ({ name }) => {
        const result = await this.requireNetwork().secure(name);
        this.opts.log.debug(`secured ${name} for pid ${client.peer.pid}`);
        return result;
      })
      .onRequest(GuardNetworkStatus, async () => {
        const s = await this.requireNetwork().status();
        return {
          tables: s.installed.tables,
          installed: s.installed.sandboxes.map((x) => ({
            container: x.key,
            bootBlocked: x.bootBlocked,
            ...(x.hostIface !== undefined ? { hostIface: x.hostIface } : {}),
            ...(x.mode !== undefined ? { mode: x.mode } : {}),
            ...(x.backend !== undefined ? { backend: x.backend } : {}),
            ...(x.packets !== undefined ? { packets: x.packets } : {}),
            ...(x.bytes !== undefined ? { bytes: x.bytes } : {}),
          })),
          orphans: s.orphans,
          problems: s.problems,
          ...(s.lastApply ? { lastApply: s.lastApply } : {}),
          recentApplies: s.recentApplies,
          pending: s.pending,
        };
      })
      .onRequest(GuardCleanOrphans, async ({ dryRun }) => {
        const r = await this.requireNetwork().cleanOrphans(dryRun);
        if (!dryRun && (r.removed.length > 0 || r.caches.length > 0)) this.opts.log.info(`removed the rules of ${r.removed.length} sandbox(es) that no longer exist (asked by pid ${client.peer.pid})`);
        return r;
      })
      .onRequest(GuardSubscribe, ({ topics }) => {
        for (const t of topics) client.topics.add(t);
        return { topics: [...client.topics] };
      })
      .onRequest(GuardAllowIdmap, async ({ uid, gid }) => {
        const peer = client.peer;
        if (peer.uid !== 0 && (peer.uid !== uid || !peer.gids.includes(gid))) {
          throw new CoiError(ErrorCodes.NOT_PERMITTED, `uid ${peer.uid} may only delegate its own ids (asked for ${uid}:${gid})`);
        }
        const changedUid = await delegateId(this.opts.subuidFile ?? '/etc/subuid', uid);
        const changedGid = await delegateId(this.opts.subgidFile ?? '/etc/subgid', gid);
        if (changedUid || changedGid) this.opts.log.info(`delegated uid ${uid} and gid ${gid} for raw.idmap (asked by pid ${peer.pid})`);
        return { changed: changedUid || changedGid };
      })
      .onRequest(GuardShutdown, () => {
        if (client.peer.uid !== 0) {
          throw new CoiError(ErrorCodes.NOT_PERMITTED, 'only root may stop the guard', { remedy: { title: 'Stop it as root', shell: 'sudo coi guard stop' } });
        }
        setImmediate(() => this.opts.onShutdownRequested?.());
        return { stopping: true as const };
      })
      .onRequest(GuardPoolTake, async ({ spec, size, name, adopt, endWithClient }) => {
        const pool = this.requirePool();
        // Members are made as root with the client's disks: only what the client may share itself.
        await vetPoolSpec(spec, client.peer);
        if (adopt) await vetAdoption(adopt, spec, client.peer);
        if (!this.dutiful) return { taken: false, reason: 'this guard does not keep the warm pool (another guard holds the host lock)' };
        if (name === undefined) {
          pool.want(spec, size);
          return { taken: false };
        }
        const r = await pool.take(spec, size, name, client.peer.pid, adopt);
        if (r.taken && endWithClient) {
          // Gone already (it died while we fenced): no close event is coming.
          if (!this.clients.has(client.id)) void pool.endTaken(name, client.peer.pid);
          else client.onGone.push(() => void pool.endTaken(name, client.peer.pid));
        }
        return r;
      })
      .onRequest(GuardPoolDrain, async ({ prefix }) => ({ deleted: this.dutiful ? await this.requirePool().drain(prefix) : [] }))
      .onRequest(GuardPoolStatus, async () => this.requirePool().status())
      .onRequest(MonitorSnapshot, async ({ container }) => {
        if (!this.monitor) throw new CoiError(ErrorCodes.NOT_PERMITTED, 'this guard runs without its monitor');
        return this.monitor.snapshot(container);
      });
  }

  private requireNetwork(): NetworkController {
    if (!this.network) throw new CoiError(ErrorCodes.NOT_PERMITTED, 'this guard does not fence networks (started without network support)', { remedy: { title: 'Restart the guard', shell: 'sudo coi guard stop && sudo coi guard start' } });
    return this.network;
  }

  private requirePool(): PoolKeeper {
    if (!this.pool) throw new CoiError(ErrorCodes.NOT_PERMITTED, 'this guard keeps no warm pool (started without network support)');
    return this.pool;
  }

  private relayPacket(e: PacketEvent): void {
    // A packet let through but noted (DNS shaped like a tunnel) is no network event: only the monitor judges it.
    if (e.action !== 'log') this.broadcastPacket({ ...e, action: e.action });
    // The monitor judges refused connections (C2 ports, metadata, allowlist misses) as evidence too.
    this.monitor?.onPacket(e.container, {
      time: Date.now(),
      rule: e.rule,
      action: e.action,
      ...(e.proto !== undefined ? { proto: e.proto } : {}),
      ...(e.src !== undefined ? { src: e.src } : {}),
      ...(e.dst !== undefined ? { dst: e.dst } : {}),
      ...(e.dport !== undefined ? { dport: e.dport } : {}),
    });
  }

  private broadcastPacket(e: PacketEvent & { action: 'drop' | 'reject' }): void {
    const event: GuardEvent = {
      topic: 'network',
      event: {
        container: e.container.slice(0, 128),
        rule: e.rule.slice(0, 32),
        action: e.action,
        time: new Date().toISOString(),
        ...(e.src !== undefined ? { src: e.src.slice(0, 64) } : {}),
        ...(e.dst !== undefined ? { dst: e.dst.slice(0, 64) } : {}),
        ...(e.proto !== undefined ? { proto: e.proto.slice(0, 16) } : {}),
        ...(e.dport !== undefined ? { dport: e.dport } : {}),
      },
    };
    this.broadcast(event);
  }

  private relayIncus(e: RawEvent): void {
    const lc = lifecycleOf(e);
    if (!lc) return;
    const event: IncusEvent = { type: e.type, timestamp: e.timestamp, action: lc.action.slice(0, 256), source: lc.source.slice(0, 1024) };
    if (e.project) event.project = e.project.slice(0, 256);
    this.broadcast({ topic: 'incus', event });
  }

  private broadcast(ev: GuardEvent): void {
    for (const c of this.clients.values()) {
      if (!c.topics.has(ev.topic)) continue;
      notify(c.conn, GuardEventNotification, ev).catch(() => undefined);
    }
  }
}
