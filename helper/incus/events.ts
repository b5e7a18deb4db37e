/**
 * A subscription to Incus's `/1.0/events` websocket that survives Incus
 * restarts: on any close it reconnects with backoff and resubscribes to the same
 * event types, and tells listeners when it lost and regained the stream (events
 * in between are gone, so a consumer should re-read state on `connected`).
 */
import { EventEmitter } from 'node:events';
import type WebSocket from 'ws';
import type { Transport } from './transport';
import type { RawEvent } from './types';

export type EventType = 'lifecycle' | 'operation' | 'logging';

export interface EventStreamOptions {
  types: EventType[];
  project: string;
  allProjects: boolean;
  onLog?: (message: string) => void;
}

export interface IncusEventStreamEvents {
  event: [RawEvent];
  connected: [];
  disconnected: [Error | undefined];
}

const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5_000;
/** Longest event we accept; Incus events are a few KiB. */
const MAX_EVENT_BYTES = 1024 * 1024;

export class IncusEventStream extends EventEmitter<IncusEventStreamEvents> {
  private ws: WebSocket | undefined;
  private closed = false;
  private backoff = MIN_BACKOFF_MS;
  private timer: NodeJS.Timeout | undefined;
  private isConnected = false;
  private firstConnect: Promise<void>;
  private resolveFirst!: () => void;

  constructor(private readonly transport: Transport, private readonly opts: EventStreamOptions) {
    super();
    this.firstConnect = new Promise((r) => (this.resolveFirst = r));
    this.connect();
  }

  get connected(): boolean {
    return this.isConnected;
  }

  /** Resolves once the stream is connected (the first time), or rejects after timeoutMs. */
  ready(timeoutMs = 10_000): Promise<void> {
    if (this.isConnected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`Incus event stream not connected after ${timeoutMs} ms`)), timeoutMs);
      void this.firstConnect.then(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** Resolves with the first event that matches, or rejects after timeoutMs. Register before acting. */
  waitFor(predicate: (e: RawEvent) => boolean, timeoutMs = 30_000): Promise<RawEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: RawEvent) => {
        if (!predicate(e)) return;
        cleanup();
        resolve(e);
      };
      const t = setTimeout(() => {
        cleanup();
        reject(new Error(`no matching Incus event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(t);
        this.off('event', onEvent);
      };
      this.on('event', onEvent);
    });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.removeAllListeners();
    this.ws?.on('error', () => undefined);
    this.ws?.terminate();
    this.ws = undefined;
    this.isConnected = false;
  }

  private connect(): void {
    if (this.closed) return;
    const params = new URLSearchParams({ type: this.opts.types.join(',') });
    if (this.opts.allProjects) params.set('all-projects', 'true');
    else if (this.opts.project !== 'default') params.set('project', this.opts.project);
    const ws = this.transport.websocket(`/1.0/events?${params.toString()}`);
    this.ws = ws;
    ws.on('open', () => {
      this.backoff = MIN_BACKOFF_MS;
      this.isConnected = true;
      this.resolveFirst();
      this.emit('connected');
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary || data.length > MAX_EVENT_BYTES) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(data.toString('utf8'));
      } catch {
        this.opts.onLog?.('ignored an Incus event that is not JSON');
        return;
      }
      if (isRawEvent(parsed)) this.emit('event', parsed);
    });
    ws.on('error', (e: Error) => this.opts.onLog?.(`Incus event stream error: ${e.message}`));
    ws.on('close', () => {
      const wasConnected = this.isConnected;
      this.isConnected = false;
      this.ws = undefined;
      if (this.closed) return;
      if (wasConnected) this.emit('disconnected', undefined);
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    });
  }
}

function isRawEvent(v: unknown): v is RawEvent {
  return typeof v === 'object' && v !== null && typeof (v as RawEvent).type === 'string' && typeof (v as RawEvent).timestamp === 'string';
}

/** The lifecycle action and source of a raw event, or undefined for other event types. */
export function lifecycleOf(e: RawEvent): { action: string; source: string } | undefined {
  if (e.type !== 'lifecycle') return undefined;
  const md = e.metadata as { action?: unknown; source?: unknown } | null;
  if (!md || typeof md.action !== 'string' || typeof md.source !== 'string') return undefined;
  return { action: md.action, source: md.source };
}

/**
 * Whether a raw event says that the instance `name` stopped or was deleted:
 * what ends any session attached to it.
 */
export function instanceEnded(e: RawEvent, name: string): 'deleted' | 'stopped' | undefined {
  const lc = lifecycleOf(e);
  const m = lc && /^\/1\.0\/instances\/([^/?]+)(?:\?.*)?$/.exec(lc.source);
  if (!lc || !m || decodeURIComponent(m[1]!) !== name) return undefined;
  if (lc.action === 'instance-deleted') return 'deleted';
  if (lc.action === 'instance-stopped' || lc.action === 'instance-shutdown') return 'stopped';
  return undefined;
}
