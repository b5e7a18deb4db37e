/**
 * How bytes reach an Incus server. The client above speaks REST and knows
 * nothing of sockets; a transport knows nothing of REST.
 *
 * Today: the local unix socket. Tomorrow: a remote server or cluster over HTTPS
 * with a client certificate (what `incus remote add` sets up) — a second class
 * implementing this interface, with `https.request` and the same WebSocket call.
 */
import { createWriteStream } from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type WebSocket from 'ws';
import { CoiError, ErrorCodes } from '../errors';

export interface TransportRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  body?: unknown;
  /** Raw body (e.g. an image tarball); sent as application/octet-stream unless headers say otherwise. */
  rawBody?: NodeJS.ReadableStream | Buffer;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Per-request socket inactivity timeout. */
  timeoutMs?: number;
}

export interface TransportResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Transport {
  /** For messages: "unix:/var/lib/incus/unix.socket" or "https://host:8443". */
  readonly endpoint: string;
  request(req: TransportRequest): Promise<TransportResponse>;
  /** A GET whose body is written to a file as it arrives (image exports are far larger than any answer we buffer). */
  download(path: string, dest: string, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<{ status: number; bytes: number }>;
  websocket(pathAndQuery: string): WebSocket;
}

/** INCUS_SOCKET, else $INCUS_DIR/unix.socket, else the Debian/Ubuntu default. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.INCUS_SOCKET) return env.INCUS_SOCKET;
  if (env.INCUS_DIR) return path.join(env.INCUS_DIR, 'unix.socket');
  return '/var/lib/incus/unix.socket';
}

const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * The TLS server name, which nothing over a unix socket uses. Left unset, Node's agent (and ws)
 * work it out from the host with net.isIP, whose first call compiles a large IPv6 regex: ~8 ms
 * of a short command.
 */
const NO_SERVERNAME = { servername: '' } as const;

export class UnixSocketTransport implements Transport {
  readonly endpoint: string;

  constructor(readonly socketPath: string = defaultSocketPath()) {
    this.endpoint = `unix:${socketPath}`;
  }

  request(req: TransportRequest): Promise<TransportResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(req.headers ?? {}) };
      let payload: Buffer | undefined;
      if (req.body !== undefined) {
        payload = Buffer.from(JSON.stringify(req.body));
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(payload.length);
      } else if (Buffer.isBuffer(req.rawBody)) {
        payload = req.rawBody;
        headers['content-type'] ??= 'application/octet-stream';
        headers['content-length'] = String(payload.length);
      }
      const r = http.request(
        { socketPath: this.socketPath, path: req.path, method: req.method, headers, signal: req.signal, ...NO_SERVERNAME },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy(new CoiError(ErrorCodes.INCUS_API, `Incus answer to ${req.path} exceeds ${MAX_RESPONSE_BYTES} bytes`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', (e) => reject(this.mapError(e)));
        },
      );
      if (req.timeoutMs) {
        r.setTimeout(req.timeoutMs, () => r.destroy(new CoiError(ErrorCodes.TIMEOUT, `Incus did not answer ${req.method} ${req.path} within ${req.timeoutMs} ms`)));
      }
      r.on('error', (e) => reject(this.mapError(e)));
      if (payload) r.end(payload);
      else if (req.rawBody && !Buffer.isBuffer(req.rawBody)) req.rawBody.pipe(r);
      else r.end();
    });
  }

  download(pathAndQuery: string, dest: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<{ status: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      const r = http.request({ socketPath: this.socketPath, path: pathAndQuery, method: 'GET', signal: opts.signal, ...NO_SERVERNAME }, (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 400) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
          res.on('end', () => {
            let msg = `HTTP ${status}`;
            try {
              msg = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string }).error ?? msg;
            } catch {
              // not JSON
            }
            reject(new CoiError(status === 404 ? ErrorCodes.NOT_FOUND : ErrorCodes.INCUS_API, `Incus: ${msg} (GET ${pathAndQuery.split('?')[0]})`));
          });
          return;
        }
        const out = createWriteStream(dest, { mode: 0o600 });
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        pipeline(res, out).then(() => resolve({ status, bytes }), (e: unknown) => reject(this.mapError(e)));
      });
      if (opts.timeoutMs) r.setTimeout(opts.timeoutMs, () => r.destroy(new CoiError(ErrorCodes.TIMEOUT, `Incus sent nothing for ${opts.timeoutMs} ms on GET ${pathAndQuery}`)));
      r.on('error', (e) => reject(this.mapError(e)));
      r.end();
    });
  }

  websocket(pathAndQuery: string): WebSocket {
    // Loaded on first use: most commands never open one, and a warm `coi run` opens its first while
    // it waits for the guard.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { WebSocket } = require('ws') as typeof import('ws');
    return new WebSocket(`ws+unix://${this.socketPath}:${pathAndQuery}`, { handshakeTimeout: 10_000, ...NO_SERVERNAME });
  }

  /** Socket-level failures become errors that say what to do. */
  mapError(e: unknown): CoiError {
    if (e instanceof CoiError) return e;
    const err = e as NodeJS.ErrnoException;
    if (err?.name === 'AbortError') return new CoiError(ErrorCodes.CANCELLED, 'cancelled', { cause: e });
    switch (err?.code) {
      case 'ENOENT':
      case 'ECONNREFUSED':
        return incusUnreachable(this.socketPath, err.code, e);
      case 'EACCES':
      case 'EPERM': {
        const user = userName();
        return new CoiError(ErrorCodes.INCUS_PERMISSION, `permission denied on the Incus socket ${this.socketPath}: ${user} is not in the Incus admin group`, {
          remedy: { title: 'Add yourself to incus-admin, then log in again', shell: `sudo usermod -aG incus-admin ${user}` },
          cause: e,
        });
      }
      default:
        return new CoiError(ErrorCodes.INCUS_UNREACHABLE, `cannot talk to Incus at ${this.socketPath}: ${err?.message ?? String(e)}`, { cause: e });
    }
  }
}

export function incusUnreachable(socketPath: string, why: string, cause?: unknown): CoiError {
  return new CoiError(
    ErrorCodes.INCUS_UNREACHABLE,
    `Incus is not running or not installed (${why} on ${socketPath})`,
    {
      remedy: { title: 'Set Up This Machine', shell: 'sudo coi setup', command: 'coi.setup' },
      details: { socket: socketPath },
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

/** The user's name; a uid without a passwd entry (containers, CI) has none, and must not crash an error message. */
function userName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER || `uid ${process.getuid?.() ?? '?'}`;
  }
}
