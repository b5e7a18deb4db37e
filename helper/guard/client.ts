/**
 * The client side of the guard socket, used by the helper (and through it the
 * extension) and by `coi` commands.
 *
 * With `reconnect: true` it keeps itself connected: when the guard restarts it
 * dials again with backoff and replays its subscriptions, so a subscriber misses
 * events only for the moment the guard was down, and is told about that gap.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { MessageConnection } from 'vscode-jsonrpc';
import { CoiError, ErrorCodes } from '../errors';
import { Log, silentLog } from '../log';
import { EventTopic, GuardEvent, GuardEventNotification, GuardInfo, GuardInfoResult, GuardShutdown, GuardSubscribe } from '../protocol/methods';
import { call, onNotify, RequestDef } from '../protocol/rpc';
import { createConnection } from '../rpc/connection';
import { guardSocketPath } from './paths';

export interface GuardClientOptions {
  socketPath?: string;
  log?: Log;
  /** Keep reconnecting after the guard goes away (for long-lived subscribers). */
  reconnect?: boolean;
}

export interface GuardClientEvents {
  event: [GuardEvent];
  connected: [];
  disconnected: [];
}

const MIN_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 2_000;

export class GuardClient extends EventEmitter<GuardClientEvents> {
  readonly socketPath: string;
  private conn: MessageConnection | undefined;
  private socket: net.Socket | undefined;
  private readonly topics = new Set<EventTopic>();
  private closed = false;
  private backoff = MIN_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Log;

  constructor(private readonly opts: GuardClientOptions = {}) {
    super();
    this.socketPath = opts.socketPath ?? guardSocketPath();
    this.log = opts.log ?? silentLog;
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }

  /** Connects once. With `reconnect`, a failure here still schedules retries. */
  /**
   * `prove: false` skips the round trip that proves the guard accepted us: for
   * a caller whose first request does that anyway (a refused peer's request
   * fails), and that waits for every round trip.
   */
  async connect(opts: { timeoutMs?: number; prove?: boolean } = {}): Promise<void> {
    try {
      await this.dial(opts.timeoutMs ?? 5_000, opts.prove ?? true);
    } catch (e) {
      if (this.opts.reconnect) this.scheduleReconnect();
      throw e;
    }
  }

  /** Resolves once connected, waiting across reconnect attempts. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('connected', ok);
        reject(new CoiError(ErrorCodes.GUARD_UNREACHABLE, `guard not reachable on ${this.socketPath} within ${timeoutMs} ms`));
      }, timeoutMs);
      const ok = () => {
        clearTimeout(t);
        resolve();
      };
      this.once('connected', ok);
    });
  }

  request<P, R>(def: RequestDef<P, R>, params: P): Promise<R> {
    if (!this.conn) return Promise.reject(guardUnreachable(this.socketPath, 'not connected'));
    return call(this.conn, def, params);
  }

  info(): Promise<GuardInfoResult> {
    return this.request(GuardInfo, {});
  }

  shutdown(): Promise<unknown> {
    return this.request(GuardShutdown, {});
  }

  /** Subscribes now and after every reconnect. */
  async subscribe(topics: EventTopic[]): Promise<void> {
    for (const t of topics) this.topics.add(t);
    if (this.conn) await this.request(GuardSubscribe, { topics: [...this.topics] });
  }

  /** Whether the connection keeps the process alive (it does, unless it waits for a use that may not come). */
  keepAlive(on: boolean): void {
    if (on) this.socket?.ref();
    else this.socket?.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.teardown();
  }

  private dial(timeoutMs: number, prove = true): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(this.socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(guardUnreachable(this.socketPath, `no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(guardUnreachable(this.socketPath, e.code ?? e.message));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', () => undefined);
        void this.adopt(socket, prove).then(resolve, reject);
      });
    });
  }

  private async adopt(socket: net.Socket, prove: boolean): Promise<void> {
    const conn = createConnection(socket, socket, { log: this.log });
    onNotify(conn, GuardEventNotification, (e) => this.emit('event', e), (why) => this.log.warn(`dropped an invalid guard event: ${why}`));
    const lost = () => {
      if (this.conn !== conn) return;
      this.teardown();
      this.emit('disconnected');
      if (this.opts.reconnect && !this.closed) this.scheduleReconnect();
    };
    conn.onClose(lost);
    socket.on('close', lost);
    conn.listen();
    this.conn = conn;
    this.socket = socket;
    try {
      // A round trip proves the guard accepted us (it drops peers it refuses).
      if (this.topics.size > 0) await call(conn, GuardSubscribe, { topics: [...this.topics] });
      else if (prove) await call(conn, GuardInfo, {});
    } catch (e) {
      this.teardown();
      throw e instanceof CoiError ? e : guardUnreachable(this.socketPath, String(e));
    }
    this.backoff = MIN_BACKOFF_MS;
    this.emit('connected');
  }

  private teardown(): void {
    const conn = this.conn;
    this.conn = undefined;
    conn?.dispose();
    this.socket?.destroy();
    this.socket = undefined;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dial(5_000).catch(() => this.scheduleReconnect());
    }, this.backoff);
    this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
  }
}

export function guardUnreachable(socketPath: string, why: string): CoiError {
  return new CoiError(ErrorCodes.GUARD_UNREACHABLE, `the COI guard is not running (${why} on ${socketPath})`, {
    remedy: { title: 'Start the guard', shell: 'sudo coi guard start', command: 'coi.setup' },
  });
}
