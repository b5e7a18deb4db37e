/**
 * Exec over websockets: output streamed as it is produced (coi run), and
 * interactive sessions with a pty (coi attach, the editor's terminal).
 *
 * Incus hands out one secret per stream; every websocket must be connected
 * before the command starts. Output is complete only once the stdout and
 * stderr sockets have closed, so we wait for both and for the operation.
 */
import type { Readable, Writable } from 'node:stream';
import type WebSocket from 'ws';
import { CoiError, ErrorCodes } from '../errors';
import type { IncusClient } from './client';

export interface StreamExecOptions {
  user?: number;
  group?: number;
  cwd?: string;
  env?: Record<string, string>;
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  signal?: AbortSignal;
}

export interface InteractiveExecOptions {
  user?: number;
  group?: number;
  cwd?: string;
  env?: Record<string, string>;
  width: number;
  height: number;
  input: Readable;
  output: Writable;
  /**
   * Ends the session from our side: the websockets are dropped and `done`
   * resolves with -1 without waiting for the operation. For when the instance
   * is gone: Incus then neither closes the pty's websocket nor ends the
   * operation, so nothing else would.
   */
  end?: AbortSignal;
}

export interface InteractiveSession {
  resize(width: number, height: number): void;
  /** Resolves with the exit code when the remote command ends. */
  done: Promise<number>;
}

interface ExecOperation {
  id: string;
  metadata: { fds?: Record<string, string> };
}

async function startExec(incus: IncusClient, name: string, body: Record<string, unknown>): Promise<{ op: string; fds: Record<string, string> }> {
  const { metadata, operation } = await incus.call<ExecOperation>('POST', incus.url(`/1.0/instances/${encodeURIComponent(name)}/exec`), body);
  const fds = metadata?.metadata?.fds;
  if (!operation || !fds) throw new CoiError(ErrorCodes.INCUS_API, 'Incus started exec without websocket secrets');
  return { op: operation.split('?')[0]!, fds };
}

function connect(incus: IncusClient, op: string, secret: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = incus.transport.websocket(incus.url(`${op}/websocket`, { secret }));
    ws.once('open', () => resolve(ws));
    ws.once('error', (e) => reject(new CoiError(ErrorCodes.INCUS_API, `exec websocket failed: ${e.message}`)));
  });
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === ws.CLOSED) resolve();
    else ws.once('close', () => resolve());
  });
}

function exitCodeOf(md: unknown): number {
  const r = (md as { return?: number } | null)?.return;
  return typeof r === 'number' ? r : -1;
}

export type StreamExecCommand = Pick<StreamExecOptions, 'user' | 'group' | 'cwd' | 'env'>;

function streamBody(command: string[], opts: StreamExecCommand): Record<string, unknown> {
  const body: Record<string, unknown> = {
    command,
    environment: opts.env ?? {},
    'wait-for-websocket': true,
    interactive: false,
    'record-output': false,
  };
  if (opts.user !== undefined) body.user = opts.user;
  if (opts.group !== undefined) body.group = opts.group;
  if (opts.cwd !== undefined) body.cwd = opts.cwd;
  return body;
}

/** Streams a started exec whose websockets are all connected; resolves with its exit code. */
async function stream(incus: IncusClient, op: string, [ws0, ws1, ws2, control]: [WebSocket, WebSocket, WebSocket, WebSocket], opts: StreamExecOptions): Promise<number> {
  ws1.on('message', (d: Buffer) => opts.stdout.write(d));
  ws2.on('message', (d: Buffer) => opts.stderr.write(d));
  if (opts.stdin) {
    opts.stdin.on('data', (d: Buffer) => ws0.send(d));
    opts.stdin.on('end', () => ws0.close());
  } else {
    // No input: tell the command at once that stdin is at its end.
    ws0.close();
  }
  const onAbort = () => control.send(JSON.stringify({ command: 'signal', signal: 9 }));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [opResult] = await Promise.all([incus.waitOperation(op, { timeoutMs: 365 * 24 * 3600 * 1000 }), closed(ws1), closed(ws2)]);
    return exitCodeOf(opResult.metadata);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    for (const ws of [ws0, control]) if (ws.readyState === ws.OPEN) ws.close();
  }
}

/** Runs a command with stdin/stdout/stderr streamed; resolves with its exit code. */
export async function execStream(incus: IncusClient, name: string, command: string[], opts: StreamExecOptions): Promise<number> {
  const { op, fds } = await startExec(incus, name, streamBody(command, opts));
  const sockets = await Promise.all([connect(incus, op, fds['0']!), connect(incus, op, fds['1']!), connect(incus, op, fds['2']!), connect(incus, op, fds.control!)]);
  for (const ws of sockets) ws.on('error', () => undefined);
  return stream(incus, op, sockets, opts);
}

/**
 * How long a held exec may wait for its release. Incus fails an exec whose
 * websockets are not all connected within 5 s; a release later than this is
 * not attempted (the caller runs the command afresh).
 */
const HOLD_MS = 4_000;

/** A held exec that can no longer start: its command never ran, and the caller may run it afresh. */
export class ExecNotStarted extends Error {}

export interface HeldExec {
  readonly name: string;
  /**
   * Connects the last websocket, which starts the command, and streams it.
   * Rejects with ExecNotStarted when the exec could not be set up or its
   * hold ran out: the command did not run.
   */
  release(io: Pick<StreamExecOptions, 'stdin' | 'stdout' | 'stderr' | 'signal'>): Promise<number>;
  /** Gives it up: its command never runs (Incus ends the exec when its wait runs out). */
  abandon(): void;
}

/**
 * Sets up an exec now and starts its command later: Incus starts a command
 * only once every one of its websockets is connected, so all but stdin's are
 * connected here and stdin's at `release`. For a command that must not start
 * before something else is done (a warm member's take), at no cost to it.
 */
export function holdExec(incus: IncusClient, name: string, command: string[], opts: StreamExecCommand): HeldExec {
  const since = Date.now();
  let abandoned = false;
  const ready = (async () => {
    const { op, fds } = await startExec(incus, name, streamBody(command, opts));
    const sockets = await Promise.all([connect(incus, op, fds['1']!), connect(incus, op, fds['2']!), connect(incus, op, fds.control!)]);
    for (const ws of sockets) ws.on('error', () => undefined);
    return { op, stdin: fds['0']!, sockets };
  })();
  ready.catch(() => undefined);
  const drop = () => void ready.then((r) => r.sockets.forEach((ws) => ws.terminate()), () => undefined);
  return {
    name,
    async release(io) {
      if (abandoned) throw new ExecNotStarted(`the exec in ${name} was given up`);
      let r: Awaited<typeof ready>;
      try {
        r = await ready;
      } catch (e) {
        throw new ExecNotStarted(`could not set up the exec in ${name}: ${(e as Error).message}`);
      }
      if (Date.now() - since > HOLD_MS) {
        drop();
        throw new ExecNotStarted(`the exec in ${name} waited too long`);
      }
      let ws0: WebSocket;
      try {
        ws0 = await connect(incus, r.op, r.stdin);
      } catch (e) {
        // Incus refused the last websocket: the exec had failed (its wait ran out), the command never started.
        drop();
        throw new ExecNotStarted(`the exec in ${name} could not start: ${(e as Error).message}`);
      }
      ws0.on('error', () => undefined);
      const [ws1, ws2, control] = r.sockets;
      return stream(incus, r.op, [ws0, ws1, ws2, control], { ...opts, ...io });
    },
    abandon() {
      if (abandoned) return;
      abandoned = true;
      drop();
    },
  };
}

/** An interactive command on a pty, e.g. `tmux attach`. */
export async function execInteractive(incus: IncusClient, name: string, command: string[], opts: InteractiveExecOptions): Promise<InteractiveSession> {
  const body: Record<string, unknown> = {
    command,
    environment: opts.env ?? {},
    'wait-for-websocket': true,
    interactive: true,
    width: opts.width,
    height: opts.height,
  };
  if (opts.user !== undefined) body.user = opts.user;
  if (opts.group !== undefined) body.group = opts.group;
  if (opts.cwd !== undefined) body.cwd = opts.cwd;
  const { op, fds } = await startExec(incus, name, body);
  const [pty, control] = await Promise.all([connect(incus, op, fds['0']!), connect(incus, op, fds.control!)]);
  pty.on('error', () => undefined);
  control.on('error', () => undefined);
  pty.on('message', (d: Buffer) => opts.output.write(d));
  const onInput = (d: Buffer) => {
    if (pty.readyState === pty.OPEN) pty.send(d);
  };
  opts.input.on('data', onInput);
  const ended = new Promise<number>((resolve) => {
    if (opts.end?.aborted) resolve(-1);
    opts.end?.addEventListener('abort', () => resolve(-1), { once: true });
  });
  const done = (async () => {
    try {
      const finished = Promise.all([incus.waitOperation(op, { timeoutMs: 365 * 24 * 3600 * 1000, ...(opts.end ? { signal: opts.end } : {}) }), closed(pty)]).then(([r]) => exitCodeOf(r.metadata));
      // The losing wait is left to fail on its own; its rejection means nothing then.
      finished.catch(() => undefined);
      return await Promise.race([finished, ended]);
    } finally {
      opts.input.off('data', onInput);
      if (opts.end?.aborted) {
        // The peer is gone: a close handshake would never be answered.
        pty.terminate();
        control.terminate();
      } else if (control.readyState === control.OPEN) control.close();
    }
  })();
  return {
    resize(width: number, height: number) {
      if (control.readyState !== control.OPEN) return;
      control.send(JSON.stringify({ command: 'window-resize', args: { width: String(width), height: String(height) } }));
    },
    done,
  };
}
