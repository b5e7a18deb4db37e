/**
 * A typed client for the Incus REST API (https://linuxcontainers.org/incus/docs/main/rest-api/).
 *
 * Incus answers every call with an envelope of type sync, async (an operation to
 * wait for) or error. This client turns errors into CoiErrors, waits on
 * operations with a timeout and an AbortSignal (cancelling the operation in
 * Incus when it can be cancelled), and runs commands in instances with their
 * exit code and output.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { CoiError, ErrorCodes } from '../errors';
import { Transport, TransportRequest, UnixSocketTransport } from './transport';
import { IncusEventStream, EventStreamOptions } from './events';
import type { ImageInfo, InstanceCreate, InstanceFull, InstanceSnapshot, InstanceState, Operation, ServerInfo, StateAction } from './types';

interface Envelope {
  type: 'sync' | 'async' | 'error';
  status?: string;
  status_code?: number;
  operation?: string;
  error_code?: number;
  error?: string;
  metadata?: unknown;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** How long to wait for an async operation to finish. Default 120 s. */
  timeoutMs?: number;
}

export interface ExecOptions extends CallOptions {
  user?: number;
  group?: number;
  cwd?: string;
  env?: Record<string, string>;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface IncusClientOptions {
  /** Incus project; "default" when absent. */
  project?: string;
}

export class IncusClient {
  readonly project: string;

  constructor(readonly transport: Transport = new UnixSocketTransport(), opts: IncusClientOptions = {}) {
    this.project = opts.project ?? 'default';
  }

  get endpoint(): string {
    return this.transport.endpoint;
  }

  /** Appends the project to a path unless it is the default one. */
  url(path: string, query: Record<string, string | number | boolean | undefined> = {}): string {
    const params = new URLSearchParams();
    if (this.project !== 'default') params.set('project', this.project);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
    const qs = params.toString();
    if (!qs) return path;
    return `${path}${path.includes('?') ? '&' : '?'}${qs}`;
  }

  /** One REST call; returns the envelope's metadata for sync answers, the operation for async ones. */
  async call<T = unknown>(method: TransportRequest['method'], path: string, body?: unknown, opts: CallOptions & { raw?: Buffer | NodeJS.ReadableStream; headers?: Record<string, string> } = {}): Promise<{ metadata: T; operation?: string }> {
    const res = await this.transport.request({
      method,
      path,
      ...(body !== undefined ? { body } : {}),
      ...(opts.raw ? { rawBody: opts.raw } : {}),
      ...(opts.headers ? { headers: opts.headers } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      timeoutMs: opts.raw ? 600_000 : 60_000,
    });
    let env: Envelope;
    try {
      env = JSON.parse(res.body.toString('utf8')) as Envelope;
    } catch {
      throw new CoiError(ErrorCodes.INCUS_API, `Incus answered ${method} ${path} with HTTP ${res.status} and a body that is not JSON`);
    }
    if (env.type === 'error' || res.status >= 400) {
      throw apiError(method, path, env.error_code ?? res.status, env.error ?? `HTTP ${res.status}`);
    }
    const result: { metadata: T; operation?: string } = { metadata: env.metadata as T };
    if (env.type === 'async' && env.operation) result.operation = env.operation;
    return result;
  }

  async get<T>(path: string, opts: CallOptions = {}): Promise<T> {
    return (await this.call<T>('GET', path, undefined, opts)).metadata;
  }

  /** Performs a call and, if Incus answers with an operation, waits for it to succeed. */
  async run<T = unknown>(method: TransportRequest['method'], path: string, body?: unknown, opts: CallOptions = {}): Promise<T> {
    const { metadata, operation } = await this.call<T>(method, path, body, opts);
    if (!operation) return metadata;
    const op = await this.waitOperation(operation, opts);
    return op.metadata as T;
  }

  /**
   * Waits for an operation using Incus's long-poll `/wait`, in slices so that an
   * AbortSignal is honoured promptly. A timeout or abort cancels the operation
   * in Incus where it allows that.
   */
  async waitOperation(operation: string, opts: CallOptions = {}): Promise<Operation> {
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    const opPath = operation.split('?')[0]!;
    for (;;) {
      if (opts.signal?.aborted) {
        await this.cancelOperation(opPath);
        throw new CoiError(ErrorCodes.CANCELLED, `cancelled while waiting for ${opPath}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        await this.cancelOperation(opPath);
        throw new CoiError(ErrorCodes.TIMEOUT, `Incus operation ${opPath} did not finish within ${opts.timeoutMs ?? 120_000} ms`);
      }
      const slice = Math.max(1, Math.min(5, Math.ceil(left / 1000)));
      const op = await this.get<Operation>(this.url(`${opPath}/wait`, { timeout: slice }), opts.signal ? { signal: opts.signal } : {}).catch((e: unknown) => {
        if (e instanceof CoiError && e.code === ErrorCodes.CANCELLED) return undefined;
        // Incus answers a wait that outlasts its timeout with an error envelope: still running.
        if (e instanceof CoiError && /context deadline exceeded/.test(e.message)) return undefined;
        throw e;
      });
      if (!op) continue;
      if (op.status === 'Success') return op;
      if (op.status === 'Failure' || op.status === 'Cancelled') {
        throw new CoiError(ErrorCodes.INCUS_API, `Incus operation failed: ${op.err || op.status} (${op.description})`, { details: { operation: opPath } });
      }
    }
  }

  private async cancelOperation(opPath: string): Promise<void> {
    await this.call('DELETE', this.url(opPath)).catch(() => undefined);
  }

  // ── server ────────────────────────────────────────────────────────────────

  server(opts: CallOptions = {}): Promise<ServerInfo> {
    return this.get<ServerInfo>(this.url('/1.0'), opts);
  }

  // ── instances ─────────────────────────────────────────────────────────────

  /** Full instances (config, devices, state) in one call; `recursion: 1` leaves the state out, which is much cheaper. */
  async listInstances(opts: CallOptions & { filter?: string; recursion?: 1 | 2 } = {}): Promise<InstanceFull[]> {
    return ((await this.get<InstanceFull[] | null>(this.url('/1.0/instances', { recursion: opts.recursion ?? 2, filter: opts.filter }), opts)) ?? []).map(normaliseInstance);
  }

  /** With its state, unless `state: false`: Incus asks the running container for it, most of the call's time. */
  async getInstance(name: string, opts: CallOptions & { state?: boolean } = {}): Promise<InstanceFull> {
    return normaliseInstance(await this.get<InstanceFull>(this.url(`/1.0/instances/${encodeURIComponent(name)}`, opts.state === false ? {} : { recursion: 1 }), opts));
  }

  async instanceExists(name: string): Promise<boolean> {
    try {
      await this.get(this.url(`/1.0/instances/${encodeURIComponent(name)}`));
      return true;
    } catch (e) {
      if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) return false;
      throw e;
    }
  }

  async createInstance(spec: InstanceCreate, opts: CallOptions = {}): Promise<void> {
    await this.run('POST', this.url('/1.0/instances'), spec, opts);
  }

  async setState(name: string, action: StateAction, opts: CallOptions & { force?: boolean; timeoutSec?: number } = {}): Promise<void> {
    const body: Record<string, unknown> = { action, force: opts.force ?? false };
    if (opts.timeoutSec !== undefined) body.timeout = opts.timeoutSec;
    await this.run('PUT', this.url(`/1.0/instances/${encodeURIComponent(name)}/state`), body, opts);
  }

  getState(name: string, opts: CallOptions = {}): Promise<InstanceState> {
    return this.get<InstanceState>(this.url(`/1.0/instances/${encodeURIComponent(name)}/state`), opts);
  }

  async deleteInstance(name: string, opts: CallOptions & { force?: boolean } = {}): Promise<void> {
    if (opts.force) {
      const state = await this.getState(name, opts).catch(() => undefined);
      if (state && state.status !== 'Stopped') await this.setState(name, 'stop', { ...opts, force: true });
    }
    await this.run('DELETE', this.url(`/1.0/instances/${encodeURIComponent(name)}`), undefined, opts);
  }

  /**
   * Runs a command in an instance without websockets: Incus records stdout and
   * stderr to log files we fetch and delete afterwards.
   */
  async exec(name: string, command: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (command.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, 'exec needs a command');
    const body: Record<string, unknown> = {
      command,
      'wait-for-websocket': false,
      'record-output': true,
      interactive: false,
      environment: opts.env ?? {},
    };
    if (opts.user !== undefined) body.user = opts.user;
    if (opts.group !== undefined) body.group = opts.group;
    if (opts.cwd !== undefined) body.cwd = opts.cwd;
    const { operation } = await this.call('POST', this.url(`/1.0/instances/${encodeURIComponent(name)}/exec`), body, opts);
    if (!operation) throw new CoiError(ErrorCodes.INCUS_API, 'Incus started exec without an operation');
    const op = await this.waitOperation(operation, opts);
    const md = (op.metadata ?? {}) as { return?: number; output?: Record<string, string> };
    const output = md.output ?? {};
    const [stdout, stderr] = await Promise.all([this.fetchLog(output['1']), this.fetchLog(output['2'])]);
    return { exitCode: md.return ?? -1, stdout, stderr };
  }

  private async fetchLog(logPath: string | undefined): Promise<string> {
    if (!logPath) return '';
    const res = await this.transport.request({ method: 'GET', path: this.url(logPath) });
    // The log files would pile up in Incus's log directory otherwise.
    await this.call('DELETE', this.url(logPath)).catch(() => undefined);
    return res.status < 400 ? res.body.toString('utf8') : '';
  }

  /** Sets or (with "") removes instance config keys, leaving the others alone. */
  async patchConfig(name: string, config: Record<string, string>, opts: CallOptions = {}): Promise<void> {
    await this.run('PATCH', this.url(`/1.0/instances/${encodeURIComponent(name)}`), { config }, opts);
  }

  // ── snapshots ─────────────────────────────────────────────────────────────

  listSnapshots(name: string, opts: CallOptions = {}): Promise<InstanceSnapshot[]> {
    return this.get<InstanceSnapshot[]>(this.url(`/1.0/instances/${encodeURIComponent(name)}/snapshots`, { recursion: 1 }), opts);
  }

  getSnapshot(name: string, snapshot: string, opts: CallOptions = {}): Promise<InstanceSnapshot> {
    return this.get<InstanceSnapshot>(this.url(`/1.0/instances/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot)}`), opts);
  }

  /** A snapshot of the instance's root disk (and, when stateful, its memory). */
  async createSnapshot(name: string, snapshot: string, opts: CallOptions & { stateful?: boolean } = {}): Promise<void> {
    await this.run('POST', this.url(`/1.0/instances/${encodeURIComponent(name)}/snapshots`), { name: snapshot, stateful: opts.stateful ?? false }, { timeoutMs: 300_000, ...opts });
  }

  async deleteSnapshot(name: string, snapshot: string, opts: CallOptions = {}): Promise<void> {
    await this.run('DELETE', this.url(`/1.0/instances/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot)}`), undefined, { timeoutMs: 300_000, ...opts });
  }

  /**
   * Restores the instance (root disk and config) from a snapshot. Incus stops a
   * running instance, restores it and starts it again, all in one operation.
   */
  async restoreSnapshot(name: string, snapshot: string, opts: CallOptions = {}): Promise<void> {
    await this.run('PUT', this.url(`/1.0/instances/${encodeURIComponent(name)}`), { restore: snapshot, stateful: false }, { timeoutMs: 300_000, ...opts });
  }

  // ── files ─────────────────────────────────────────────────────────────────

  /** Writes a file (or makes a directory) inside an instance; works on stopped instances too. */
  async pushFile(name: string, filePath: string, content: Buffer | undefined, opts: { uid?: number; gid?: number; mode?: number; type?: 'file' | 'directory' } = {}): Promise<void> {
    const headers: Record<string, string> = {
      'X-Incus-type': opts.type ?? 'file',
      'X-Incus-write': 'overwrite',
      'X-Incus-uid': String(opts.uid ?? 0),
      'X-Incus-gid': String(opts.gid ?? 0),
      'X-Incus-mode': (opts.mode ?? (opts.type === 'directory' ? 0o755 : 0o644)).toString(8).padStart(4, '0'),
    };
    await this.call('POST', this.url(`/1.0/instances/${encodeURIComponent(name)}/files`, { path: filePath }), undefined, { raw: content ?? Buffer.alloc(0), headers });
  }

  /** Reads a file, or lists a directory, inside an instance. */
  async pullFile(name: string, filePath: string): Promise<{ type: 'file'; content: Buffer; mode: number; uid: number; gid: number } | { type: 'directory'; entries: string[]; mode: number }> {
    const res = await this.transport.request({ method: 'GET', path: this.url(`/1.0/instances/${encodeURIComponent(name)}/files`, { path: filePath }), timeoutMs: 120_000 });
    const type = String(res.headers['x-incus-type'] ?? '');
    const mode = parseInt(String(res.headers['x-incus-mode'] ?? '644'), 8);
    if (res.status >= 400 || (type !== 'file' && type !== 'directory')) {
      let msg = `HTTP ${res.status}`;
      try {
        msg = (JSON.parse(res.body.toString('utf8')) as { error?: string }).error ?? msg;
      } catch {
        // not JSON
      }
      throw apiError('GET', `/1.0/instances/${name}/files?path=${filePath}`, res.status, msg);
    }
    if (type === 'directory') {
      const env = JSON.parse(res.body.toString('utf8')) as { metadata?: string[] };
      return { type, entries: env.metadata ?? [], mode };
    }
    return { type, content: res.body, mode, uid: Number(res.headers['x-incus-uid'] ?? 0), gid: Number(res.headers['x-incus-gid'] ?? 0) };
  }

  // ── images ────────────────────────────────────────────────────────────────

  /** Imports a unified image tarball (metadata.yaml + rootfs/) from a file; returns its fingerprint. */
  async importImage(tarPath: string, opts: CallOptions & { properties?: Record<string, string> } = {}): Promise<string> {
    const { size } = await fsp.stat(tarPath);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(size) };
    if (opts.properties) headers['X-Incus-properties'] = new URLSearchParams(opts.properties).toString();
    const { operation } = await this.call('POST', this.url('/1.0/images'), undefined, { ...opts, raw: createReadStream(tarPath), headers });
    if (!operation) throw new CoiError(ErrorCodes.INCUS_API, 'Incus accepted the image without an operation');
    const op = await this.waitOperation(operation, { ...opts, timeoutMs: opts.timeoutMs ?? 600_000 });
    const fp = (op.metadata as { fingerprint?: string } | null)?.fingerprint;
    if (!fp) throw new CoiError(ErrorCodes.INCUS_API, 'Incus imported the image but reported no fingerprint');
    return fp;
  }

  /** The fingerprint an alias points at, or undefined. */
  async imageAlias(name: string): Promise<string | undefined> {
    try {
      return (await this.get<{ target: string }>(this.url(`/1.0/images/aliases/${encodeURIComponent(name)}`))).target;
    } catch (e) {
      if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) return undefined;
      throw e;
    }
  }

  /** Points an alias at a fingerprint, creating or moving it. */
  async setImageAlias(name: string, fingerprint: string, description = ''): Promise<void> {
    if (await this.imageAlias(name)) {
      await this.run('PUT', this.url(`/1.0/images/aliases/${encodeURIComponent(name)}`), { target: fingerprint, description });
    } else {
      await this.run('POST', this.url('/1.0/images/aliases'), { name, target: fingerprint, description });
    }
  }

  getImage(fingerprint: string): Promise<ImageInfo> {
    return this.get<ImageInfo>(this.url(`/1.0/images/${encodeURIComponent(fingerprint)}`));
  }

  /** Every image with its aliases and properties. */
  listImages(opts: CallOptions = {}): Promise<ImageInfo[]> {
    return this.get<ImageInfo[]>(this.url('/1.0/images', { recursion: 1 }), opts);
  }

  /** Every alias with the fingerprint it points at. */
  async listImageAliases(opts: CallOptions = {}): Promise<{ name: string; target: string; description: string }[]> {
    return this.get<{ name: string; target: string; description: string }[]>(this.url('/1.0/images/aliases', { recursion: 1 }), opts);
  }

  async deleteImageAlias(name: string): Promise<void> {
    await this.run('DELETE', this.url(`/1.0/images/aliases/${encodeURIComponent(name)}`));
  }

  async deleteImage(fingerprint: string, opts: CallOptions = {}): Promise<void> {
    await this.run('DELETE', this.url(`/1.0/images/${encodeURIComponent(fingerprint)}`), undefined, { timeoutMs: 300_000, ...opts });
  }

  /** Publishes a (stopped) instance as an image; returns its fingerprint. */
  async publishInstance(name: string, opts: CallOptions & { properties?: Record<string, string>; compression?: string } = {}): Promise<string> {
    const body: Record<string, unknown> = { source: { type: 'instance', name }, properties: opts.properties ?? {}, public: false };
    if (opts.compression) body.compression_algorithm = opts.compression;
    const md = await this.run<{ fingerprint?: string }>('POST', this.url('/1.0/images'), body, { ...opts, timeoutMs: opts.timeoutMs ?? 1_800_000 });
    if (!md?.fingerprint) throw new CoiError(ErrorCodes.INCUS_API, `Incus published ${name} but reported no fingerprint`);
    return md.fingerprint;
  }

  /** Writes a unified image's tarball to a file. */
  async exportImage(fingerprint: string, dest: string, opts: { signal?: AbortSignal } = {}): Promise<number> {
    const r = await this.transport.download(this.url(`/1.0/images/${encodeURIComponent(fingerprint)}/export`), dest, { timeoutMs: 300_000, ...(opts.signal ? { signal: opts.signal } : {}) });
    return r.bytes;
  }

  /** Writes a file inside an instance from a stream (agent binaries are hundreds of MB). */
  async pushFileStream(name: string, filePath: string, content: NodeJS.ReadableStream, size: number, opts: { uid?: number; gid?: number; mode?: number } = {}): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(size),
      'X-Incus-type': 'file',
      'X-Incus-write': 'overwrite',
      'X-Incus-uid': String(opts.uid ?? 0),
      'X-Incus-gid': String(opts.gid ?? 0),
      'X-Incus-mode': (opts.mode ?? 0o644).toString(8).padStart(4, '0'),
    };
    await this.call('POST', this.url(`/1.0/instances/${encodeURIComponent(name)}/files`, { path: filePath }), undefined, { raw: content, headers });
  }

  // ── events ────────────────────────────────────────────────────────────────

  /** A reconnecting subscription to /1.0/events. Call `close()` when done. */
  events(opts: Partial<EventStreamOptions> = {}): IncusEventStream {
    return new IncusEventStream(this.transport, {
      types: opts.types ?? ['lifecycle'],
      project: this.project,
      allProjects: opts.allProjects ?? false,
      ...(opts.onLog ? { onLog: opts.onLog } : {}),
    });
  }
}

/** An instance caught while being created or deleted can come back with null config or devices. */
function normaliseInstance(i: InstanceFull): InstanceFull {
  return { ...i, config: i.config ?? {}, devices: i.devices ?? {}, profiles: i.profiles ?? [] };
}

function apiError(method: string, path: string, status: number, message: string): CoiError {
  const where = `${method} ${path.split('?')[0]}`;
  if (status === 404) return new CoiError(ErrorCodes.NOT_FOUND, `${message} (${where})`, { details: { status } });
  // A duplicate create fails late, inside the operation, as a database constraint error.
  if (status === 409 || /already exists|UNIQUE constraint failed/.test(message)) {
    return new CoiError(ErrorCodes.ALREADY_EXISTS, `${message} (${where})`, { details: { status } });
  }
  if (status === 403) return new CoiError(ErrorCodes.INCUS_PERMISSION, `Incus refused ${where}: ${message}`, { details: { status } });
  return new CoiError(ErrorCodes.INCUS_API, `Incus: ${message} (${where})`, { details: { status } });
}
