/**
 * The machinery behind the protocol: typed request and notification definitions
 * (each with its zod schemas), a router that validates everything on arrival, and
 * a typed client wrapper that validates what comes back.
 *
 * One star handler per connection does the dispatch, so params arrive exactly as
 * sent: a positional array, a missing object or a wrong type all become
 * InvalidParams that name the offending fields, never a crash or a silent drop.
 */
import { once } from '../lazy';
import { z } from 'zod';
import {
  CancellationToken,
  ErrorCodes as RpcErrorCodes,
  MessageConnection,
  ResponseError,
} from 'vscode-jsonrpc';
import { CoiError, CoiErrorData, ErrorCodes, toCoiError } from '../errors';

export interface RequestDef<P, R> {
  readonly kind: 'request';
  readonly method: string;
  readonly params: z.ZodType<P>;
  readonly result: z.ZodType<R>;
}

export interface NotificationDef<P> {
  readonly kind: 'notification';
  readonly method: string;
  readonly params: z.ZodType<P>;
}

export function request<P, R>(method: string, params: () => z.ZodType<P>, result: () => z.ZodType<R>): RequestDef<P, R> {
  const p = once(params);
  const r = once(result);
  return {
    kind: 'request',
    method,
    get params() {
      return p();
    },
    get result() {
      return r();
    },
  };
}

export function notification<P>(method: string, params: () => z.ZodType<P>): NotificationDef<P> {
  const p = once(params);
  return {
    kind: 'notification',
    method,
    get params() {
      return p();
    },
  };
}

/** Our JSON-RPC error codes: 4000 + the index of the domain code. Outside the spec's reserved range. */
const DOMAIN_CODE_BASE = 4000;
const domainCodes = Object.values(ErrorCodes);

export function toResponseError(e: unknown): ResponseError<CoiErrorData> {
  const err = toCoiError(e);
  return new ResponseError<CoiErrorData>(DOMAIN_CODE_BASE + domainCodes.indexOf(err.code), err.message, err.toData());
}

const coiErrorDataSchema = z.object({
  code: z.enum(domainCodes as [string, ...string[]]),
  message: z.string(),
  remedy: z.object({ title: z.string(), shell: z.string().optional(), command: z.string().optional() }).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});

/** Rebuilds a CoiError from whatever error the other side sent, validating it like any message. */
export function fromResponseError(e: unknown, method: string): CoiError {
  if (e instanceof ResponseError) {
    const parsed = coiErrorDataSchema.safeParse(e.data);
    if (parsed.success) return CoiError.fromData(parsed.data as CoiErrorData);
    if (e.code === RpcErrorCodes.MethodNotFound) {
      return new CoiError(ErrorCodes.INTERNAL, `the other side does not know ${method}: versions differ?`, { details: { rpcCode: e.code } });
    }
    return new CoiError(ErrorCodes.INTERNAL, `${method} failed: ${e.message}`, { details: { rpcCode: e.code } });
  }
  return toCoiError(e);
}

/** "slot: expected number, received string; name: required" — short enough for a notification. */
export function describeZodError(error: z.ZodError, limit = 5): string {
  const parts = error.issues.slice(0, limit).map((i) => `${i.path.length ? i.path.join('.') : '(params)'}: ${i.message}`);
  if (error.issues.length > limit) parts.push(`and ${error.issues.length - limit} more`);
  return parts.join('; ');
}

export type RequestHandler<P, R> = (params: P, token: CancellationToken) => Promise<R> | R;
export type NotificationHandler<P> = (params: P) => void | Promise<void>;

interface RequestRoute {
  def: RequestDef<unknown, unknown>;
  handler: RequestHandler<unknown, unknown>;
}
interface NotificationRoute {
  def: NotificationDef<unknown>;
  handler: NotificationHandler<unknown>;
}

export interface RouterLogger {
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Validating dispatcher for one connection. Register typed handlers, then
 * `attach` it: unknown methods get MethodNotFound, invalid params InvalidParams,
 * handler failures a ResponseError carrying CoiErrorData.
 */
export class Router {
  private readonly requests = new Map<string, RequestRoute>();
  private readonly notifications = new Map<string, NotificationRoute>();

  constructor(private readonly log: RouterLogger) {}

  onRequest<P, R>(def: RequestDef<P, R>, handler: RequestHandler<P, R>): this {
    this.requests.set(def.method, { def, handler } as unknown as RequestRoute);
    return this;
  }

  onNotification<P>(def: NotificationDef<P>, handler: NotificationHandler<P>): this {
    this.notifications.set(def.method, { def, handler } as unknown as NotificationRoute);
    return this;
  }

  get methods(): string[] {
    return [...this.requests.keys(), ...this.notifications.keys()];
  }

  attach(conn: MessageConnection): void {
    conn.onRequest((method: string, params: unknown, token: CancellationToken) => this.dispatchRequest(method, params, token));
    conn.onNotification((method: string, params: unknown) => this.dispatchNotification(method, params));
  }

  async dispatchRequest(method: string, rawParams: unknown, token: CancellationToken): Promise<unknown> {
    const route = this.requests.get(method);
    if (!route) {
      throw new ResponseError(RpcErrorCodes.MethodNotFound, `unknown method ${truncate(method, 80)}`);
    }
    // JSON-RPC lets a client omit params; we treat that as an empty object.
    const parsed = route.def.params.safeParse(rawParams === undefined || rawParams === null ? {} : rawParams);
    if (!parsed.success) {
      const message = `invalid params for ${method}: ${describeZodError(parsed.error)}`;
      const data: CoiErrorData = { code: ErrorCodes.INVALID_INPUT, message, details: { issues: parsed.error.issues.slice(0, 20) } };
      throw new ResponseError<CoiErrorData>(RpcErrorCodes.InvalidParams, message, data);
    }
    try {
      return await route.handler(parsed.data, token);
    } catch (e) {
      if (e instanceof ResponseError) throw e;
      const err = toCoiError(e);
      if (err.code === ErrorCodes.INTERNAL) this.log.error(`${method} failed: ${err.stack ?? err.message}`);
      throw toResponseError(err);
    }
  }

  async dispatchNotification(method: string, rawParams: unknown): Promise<void> {
    const route = this.notifications.get(method);
    if (!route) {
      // Notifications cannot be answered; `$/` ones are optional by the spec.
      if (!method.startsWith('$/')) this.log.warn(`ignored unknown notification ${truncate(method, 80)}`);
      return;
    }
    const parsed = route.def.params.safeParse(rawParams === undefined || rawParams === null ? {} : rawParams);
    if (!parsed.success) {
      this.log.warn(`ignored ${method} with invalid params: ${describeZodError(parsed.error)}`);
      return;
    }
    try {
      await route.handler(parsed.data);
    } catch (e) {
      this.log.error(`${method} handler failed: ${toCoiError(e).message}`);
    }
  }
}

/** Sends a typed request and validates the answer before anyone uses it. */
export async function call<P, R>(conn: MessageConnection, def: RequestDef<P, R>, params: P, token?: CancellationToken): Promise<R> {
  let raw: unknown;
  try {
    raw = token ? await conn.sendRequest(def.method, params, token) : await conn.sendRequest(def.method, params);
  } catch (e) {
    throw fromResponseError(e, def.method);
  }
  const parsed = def.result.safeParse(raw);
  if (!parsed.success) {
    throw new CoiError(ErrorCodes.INTERNAL, `malformed answer to ${def.method}: ${describeZodError(parsed.error)}`);
  }
  return parsed.data;
}

export function notify<P>(conn: MessageConnection, def: NotificationDef<P>, params: P): Promise<void> {
  return conn.sendNotification(def.method, params);
}

/** Subscribes to a typed notification, dropping (and reporting) messages that do not validate. */
export function onNotify<P>(conn: MessageConnection, def: NotificationDef<P>, handler: (p: P) => void, onInvalid?: (why: string) => void): void {
  conn.onNotification(def.method, (raw: unknown) => {
    const parsed = def.params.safeParse(raw);
    if (parsed.success) handler(parsed.data);
    else onInvalid?.(`${def.method}: ${describeZodError(parsed.error)}`);
  });
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}
