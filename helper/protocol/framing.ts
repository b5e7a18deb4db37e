/**
 * A JSON-RPC message reader (LSP base-protocol framing: `Content-Length` headers)
 * that never lets a peer crash us or grow our memory without bound, and that
 * answers garbage instead of dropping it silently:
 *
 * - a frame over `maxMessageBytes` is skipped as it streams by (never buffered)
 *   and answered with InvalidRequest;
 * - bytes that are not JSON are answered with ParseError (id null);
 * - JSON that is not a JSON-RPC request, notification or response is answered
 *   with InvalidRequest, echoing the id when it has a usable one;
 * - a header block without a valid Content-Length is answered with ParseError and
 *   skipped, and reading resumes at the next header block.
 *
 * vscode-jsonrpc's own reader logs such input and replies nothing, and buffers
 * any Content-Length it is told.
 */
import type { Readable } from 'node:stream';
import { AbstractMessageReader, DataCallback, Disposable, Message, MessageReader } from 'vscode-jsonrpc';

export interface RejectedMessage {
  jsonrpc: '2.0';
  id: string | number | null;
  error: { code: number; message: string };
}

export interface BoundedReaderOptions {
  /** Largest body we accept. Default 8 MiB: far above any message of ours. */
  maxMessageBytes?: number;
  /** Largest header block. Headers are tiny; anything longer is garbage. */
  maxHeaderBytes?: number;
  /** Called with the answer for input that never reaches the connection. */
  reject: (answer: RejectedMessage) => void;
}

const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const HEADER_END = Buffer.from('\r\n\r\n');

export class BoundedMessageReader extends AbstractMessageReader implements MessageReader {
  private buffer: Buffer = Buffer.alloc(0);
  private bodyLength = -1;
  private skipRemaining = 0;
  private callback: DataCallback | undefined;
  private readonly maxMessageBytes: number;
  private readonly maxHeaderBytes: number;

  constructor(private readonly readable: Readable, private readonly options: BoundedReaderOptions) {
    super();
    this.maxMessageBytes = options.maxMessageBytes ?? 8 * 1024 * 1024;
    this.maxHeaderBytes = options.maxHeaderBytes ?? 8 * 1024;
  }

  listen(callback: DataCallback): Disposable {
    this.callback = callback;
    const onData = (chunk: Buffer | string) => this.onData(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    const onError = (e: Error) => this.fireError(e);
    const onClose = () => this.fireClose();
    this.readable.on('data', onData);
    this.readable.on('error', onError);
    this.readable.on('close', onClose);
    this.readable.on('end', onClose);
    return Disposable.create(() => {
      this.callback = undefined;
      this.readable.off('data', onData);
      this.readable.off('error', onError);
      this.readable.off('close', onClose);
      this.readable.off('end', onClose);
    });
  }

  private onData(chunk: Buffer): void {
    if (this.skipRemaining > 0) {
      const skip = Math.min(this.skipRemaining, chunk.length);
      this.skipRemaining -= skip;
      chunk = chunk.subarray(skip);
      if (chunk.length === 0) return;
    }
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    this.drain();
  }

  private drain(): void {
    for (;;) {
      if (this.bodyLength < 0) {
        const end = this.buffer.indexOf(HEADER_END);
        if (end < 0) {
          if (this.buffer.length > this.maxHeaderBytes) {
            // No header terminator within bounds: this is not our framing. Drop it all.
            this.buffer = Buffer.alloc(0);
            this.rejectWith(null, PARSE_ERROR, 'header block too long or not terminated by CRLF CRLF');
          }
          return;
        }
        const header = this.buffer.subarray(0, end).toString('ascii');
        this.buffer = this.buffer.subarray(end + HEADER_END.length);
        const length = parseContentLength(header);
        if (length === undefined) {
          this.rejectWith(null, PARSE_ERROR, 'missing or invalid Content-Length header');
          continue;
        }
        if (length > this.maxMessageBytes) {
          this.rejectWith(null, INVALID_REQUEST, `message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`);
          const skip = Math.min(length, this.buffer.length);
          this.buffer = this.buffer.subarray(skip);
          this.skipRemaining = length - skip;
          if (this.skipRemaining > 0) return;
          continue;
        }
        this.bodyLength = length;
      }
      if (this.buffer.length < this.bodyLength) return;
      const body = this.buffer.subarray(0, this.bodyLength);
      this.buffer = this.buffer.subarray(this.bodyLength);
      this.bodyLength = -1;
      this.deliver(body);
    }
  }

  private deliver(body: Buffer): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      this.rejectWith(null, PARSE_ERROR, 'body is not valid JSON');
      return;
    }
    const problem = invalidMessageReason(parsed);
    if (problem) {
      this.rejectWith(usableId(parsed), INVALID_REQUEST, problem);
      return;
    }
    try {
      this.callback?.(parsed as Message);
    } catch (e) {
      this.fireError(e);
    }
  }

  private rejectWith(id: string | number | null, code: number, message: string): void {
    this.options.reject({ jsonrpc: '2.0', id, error: { code, message } });
  }
}

function parseContentLength(header: string): number | undefined {
  for (const line of header.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    if (line.slice(0, colon).trim().toLowerCase() !== 'content-length') continue;
    const value = line.slice(colon + 1).trim();
    if (!/^\d{1,12}$/.test(value)) return undefined;
    return Number(value);
  }
  return undefined;
}

function usableId(m: unknown): string | number | null {
  if (typeof m !== 'object' || m === null) return null;
  const id = (m as { id?: unknown }).id;
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : null;
}

/** Why a parsed value is not a JSON-RPC message we can route, or undefined when it is one. */
export function invalidMessageReason(m: unknown): string | undefined {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) {
    return Array.isArray(m) ? 'batch requests are not supported' : 'a message must be a JSON object';
  }
  const o = m as Record<string, unknown>;
  if (o.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"';
  const hasId = 'id' in o;
  const idOk = typeof o.id === 'string' || (typeof o.id === 'number' && Number.isFinite(o.id));
  if ('method' in o) {
    if (typeof o.method !== 'string' || o.method.length === 0) return 'method must be a non-empty string';
    if (o.method.length > 256) return 'method name too long';
    if (hasId && !idOk) return 'id must be a string or a number';
    if ('params' in o && o.params !== null && typeof o.params !== 'object') return 'params must be an object or an array';
    return undefined;
  }
  if (hasId && ('result' in o || 'error' in o)) return undefined;
  return 'neither a request, a notification nor a response';
}
