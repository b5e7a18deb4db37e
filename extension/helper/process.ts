/**
 * The helper process as the extension sees it: started on first use, spoken to
 * with JSON-RPC over its stdio, its stderr forwarded line by line to the log,
 * restarted after a crash as `decideRestart` says, stopped on dispose.
 *
 * No vscode import: the log is any object with LogOutputChannel's level methods,
 * so the tests can drive this class against a real child process.
 */
import { ChildProcess, spawn as nodeSpawn, SpawnOptions } from 'node:child_process';
import { CancellationToken, Emitter, Event, MessageConnection } from 'vscode-jsonrpc';
import { call, NotificationDef, onNotify, RequestDef } from '../../helper/protocol/rpc';
import { createConnection } from '../../helper/rpc/connection';
import { decideRestart, defaultRestartPolicy, recentCrashes, RestartPolicy } from './restartPolicy';

export interface HelperLog {
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export type HelperState =
  /** Never started, or stopped on purpose. */
  | { kind: 'stopped' }
  | { kind: 'running'; pid: number }
  /** Died; a restart is scheduled. */
  | { kind: 'restarting'; delayMs: number; lastExit: string }
  /** Died too often: only `restart()` (the "Restart Helper" button) brings it back. */
  | { kind: 'failed'; reason: string; lastExit: string }
  | { kind: 'disposed' };

export interface HelperProcessOptions {
  /** The program and its arguments, e.g. process.execPath and [<ext>/dist/helper.js, '--stdio']. */
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  log: HelperLog;
  policy?: RestartPolicy;
  now?: () => number;
  spawn?: (command: string, args: string[], options: SpawnOptions) => ChildProcess;
  /** How long a stop waits after SIGTERM before SIGKILL. */
  killGraceMs?: number;
}

/** Raised for requests made while the helper cannot run; `remedy` is what the UI offers. */
export class HelperUnavailableError extends Error {
  readonly remedy = { title: 'Restart Helper', command: 'coi.restartHelper' };
  constructor(message: string) {
    super(message);
    this.name = 'HelperUnavailableError';
  }
}

/** The arguments that run the bundled helper as a plain Node program, in desktop VS Code (Electron) and in code-server alike. */
export function helperSpawnArgs(helperJs: string, execPath: string, env: NodeJS.ProcessEnv): { command: string; args: string[]; env: NodeJS.ProcessEnv } {
  return { command: execPath, args: [helperJs, '--stdio'], env: { ...env, ELECTRON_RUN_AS_NODE: '1' } };
}

interface Subscription {
  def: NotificationDef<unknown>;
  handlers: Set<(params: unknown) => void>;
}

interface Running {
  child: ChildProcess;
  conn: MessageConnection;
  /** Set when we asked it to go: its exit is then not a crash. */
  stopping: boolean;
  exited: Promise<void>;
}

export class HelperProcess {
  private current: Running | undefined;
  private crashes: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private starting: Promise<MessageConnection> | undefined;
  private _state: HelperState = { kind: 'stopped' };
  private readonly stateEmitter = new Emitter<HelperState>();
  private readonly startedEmitter = new Emitter<number>();
  /** Notification subscriptions by method, applied to every connection: they survive restarts. */
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly policy: RestartPolicy;
  private readonly now: () => number;

  /** Every state change. */
  readonly onDidChangeState: Event<HelperState> = this.stateEmitter.event;
  /** A (re)started helper is ready for requests; carries its pid. */
  readonly onDidStart: Event<number> = this.startedEmitter.event;

  constructor(private readonly opts: HelperProcessOptions) {
    this.policy = opts.policy ?? defaultRestartPolicy;
    this.now = opts.now ?? Date.now;
  }

  get state(): HelperState {
    return this._state;
  }

  /** The pid of the running helper, if one runs. */
  get pid(): number | undefined {
    return this._state.kind === 'running' ? this._state.pid : undefined;
  }

  /** Sends a typed request, starting the helper first if needed; the answer is validated. */
  async request<P, R>(def: RequestDef<P, R>, params: P, token?: CancellationToken): Promise<R> {
    return call(await this.connection(), def, params, token);
  }

  /**
   * Subscribes to a typed notification of this and every later helper (after a
   * restart too). Invalid messages are logged and dropped. Does not start the helper.
   */
  onNotification<P>(def: NotificationDef<P>, handler: (params: P) => void): { dispose(): void } {
    let entry = this.subscriptions.get(def.method);
    if (!entry) {
      entry = { def: def as NotificationDef<unknown>, handlers: new Set() };
      this.subscriptions.set(def.method, entry);
      if (this.current) this.subscribe(this.current.conn, entry);
    }
    const h = handler as (params: unknown) => void;
    entry.handlers.add(h);
    return { dispose: () => void entry.handlers.delete(h) };
  }

  /** One dispatcher per method and connection (vscode-jsonrpc keeps one handler per method). */
  private subscribe(conn: MessageConnection, entry: Subscription): void {
    onNotify(
      conn,
      entry.def,
      (params) => {
        for (const h of [...entry.handlers]) {
          try {
            h(params);
          } catch (e) {
            this.opts.log.error(`${entry.def.method} handler failed: ${e instanceof Error ? e.message : String(e)}`);
          }
        }
      },
      (why) => this.opts.log.warn(`ignored notification ${why}`),
    );
  }

  /** The connection to the running helper; starts it when none runs. */
  async connection(): Promise<MessageConnection> {
    switch (this._state.kind) {
      case 'disposed':
        throw new HelperUnavailableError('the COI extension is shutting down');
      case 'failed':
        throw new HelperUnavailableError(`${this._state.reason}; last exit: ${this._state.lastExit}`);
      case 'restarting':
        // Someone needs it now: do not wait for the back-off.
        this.clearRestartTimer();
        return this.start();
      case 'stopped':
        return this.start();
      case 'running':
        return this.current!.conn;
    }
  }

  /** The "Restart Helper" action: forgets past crashes, stops any running helper and starts a fresh one. */
  async restart(): Promise<void> {
    if (this._state.kind === 'disposed') return;
    this.clearRestartTimer();
    this.crashes = [];
    await this.stopCurrent();
    await this.start().catch(() => undefined); // a failure to spawn is logged and handled as a crash
  }

  /** Stops the helper (if running) and refuses to start another. */
  async dispose(): Promise<void> {
    this.clearRestartTimer();
    this.setState({ kind: 'disposed' });
    await this.stopCurrent();
    this.stateEmitter.dispose();
    this.startedEmitter.dispose();
  }

  /** Spawns the helper; resolves once the process exists (its connection is then ready for requests). */
  private start(): Promise<MessageConnection> {
    this.starting ??= this.spawnHelper().finally(() => (this.starting = undefined));
    return this.starting;
  }

  private async spawnHelper(): Promise<MessageConnection> {
    const { command, args, log } = this.opts;
    const spawn = this.opts.spawn ?? nodeSpawn;
    log.info(`starting helper: ${command} ${args.join(' ')}`);
    const child = spawn(command, args, {
      env: this.opts.env ?? process.env,
      ...(this.opts.cwd ? { cwd: this.opts.cwd } : {}),
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });
    const conn = createConnection(child.stdout!, child.stdin!, {
      log: { debug: (m) => log.trace(`rpc: ${m}`), info: (m) => log.debug(`rpc: ${m}`), warn: (m) => log.warn(`rpc: ${m}`), error: (m) => log.error(`rpc: ${m}`) },
    });
    // A write to a dead helper must fail the request, not the extension host.
    child.stdin!.on('error', (e) => log.debug(`helper stdin: ${e.message}`));
    forwardLines(child.stderr!, (line) => forwardHelperLogLine(line, log));

    let resolveExited!: () => void;
    const running: Running = { child, conn, stopping: false, exited: new Promise<void>((r) => (resolveExited = r)) };
    this.current = running;
    let gone = false;
    const onGone = (why: string) => {
      if (gone) return;
      gone = true;
      conn.dispose(); // rejects the requests still waiting for an answer
      resolveExited();
      if (this.current === running) this.current = undefined;
      if (running.stopping) {
        log.info(`helper stopped (${why})`);
      } else {
        this.onCrash(why);
      }
    };
    // 'close', not 'exit': by then stdout is drained, so a last answer is not lost.
    child.once('close', (code, signal) => onGone(signal ? `killed by ${signal}` : `exit code ${code}`));
    // Wait for the process to exist: writing a request to a child that never
    // started would leave vscode-jsonrpc with a rejected promise nobody awaits.
    let didSpawn = false;
    const spawned = await new Promise<Error | undefined>((resolve) => {
      child.once('spawn', () => {
        didSpawn = true;
        resolve(undefined);
      });
      child.on('error', (e) => {
        if (didSpawn) {
          log.warn(`helper process: ${e.message}`); // e.g. a failed kill; 'close' tells when it is gone
          return;
        }
        resolve(e);
        onGone(`could not run it: ${e.message}`);
      });
    });
    if (spawned) throw new HelperUnavailableError(`could not start the COI helper (${command}): ${spawned.message}`);
    if (this.current !== running) throw new HelperUnavailableError('the COI helper stopped while starting');
    for (const entry of this.subscriptions.values()) this.subscribe(conn, entry);
    conn.listen();
    const pid = child.pid!;
    this.setState({ kind: 'running', pid });
    log.info(`helper running (pid ${pid})`);
    this.startedEmitter.fire(pid);
    return conn;
  }

  private onCrash(why: string): void {
    const log = this.opts.log;
    const now = this.now();
    this.crashes = recentCrashes([...this.crashes, now], now, this.policy);
    const decision = decideRestart(this.crashes, now, this.policy);
    if (this._state.kind === 'disposed') return;
    if (decision.action === 'give-up') {
      log.error(`helper died (${why}); ${decision.reason}: not restarting it`);
      this.setState({ kind: 'failed', reason: decision.reason, lastExit: why });
      return;
    }
    log.warn(`helper died (${why}); restarting in ${decision.delayMs} ms (crash ${decision.crashesInWindow} of ${this.policy.maxCrashes} allowed)`);
    this.setState({ kind: 'restarting', delayMs: decision.delayMs, lastExit: why });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this._state.kind === 'restarting') this.start().catch(() => undefined); // handled as a crash
    }, decision.delayMs);
  }

  private async stopCurrent(): Promise<void> {
    const running = this.current;
    if (!running) return;
    running.stopping = true;
    // Closing stdin is the polite way: the helper exits when its connection closes.
    running.child.stdin?.end();
    running.child.kill('SIGTERM');
    const grace = this.opts.killGraceMs ?? 2_000;
    const timer = setTimeout(() => running.child.kill('SIGKILL'), grace);
    await running.exited;
    clearTimeout(timer);
    if (this._state.kind === 'running') this.setState({ kind: 'stopped' });
  }

  private clearRestartTimer(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
  }

  private setState(s: HelperState): void {
    if (this._state.kind === 'disposed' && s.kind !== 'disposed') return;
    this._state = s;
    this.stateEmitter.fire(s);
  }
}

/** Splits a stream into lines, cutting absurdly long ones so a runaway child cannot grow our memory. */
export function forwardLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void, maxLine = 16 * 1024): void {
  let pending = '';
  stream.setEncoding?.('utf8');
  stream.on('data', (chunk: string | Buffer) => {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, nl).replace(/\r$/, ''));
      pending = pending.slice(nl + 1);
    }
    if (pending.length > maxLine) {
      onLine(`${pending.slice(0, maxLine)}…`);
      pending = '';
    }
  });
  stream.on('end', () => {
    if (pending) onLine(pending);
    pending = '';
  });
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/**
 * The helper writes `2025-01-01T00:00:00.000Z info  [helper] message` (see
 * helper/log.ts). The output channel adds its own time and level, so keep the
 * message and map the level; anything else (a Node warning, a stack) is a warning.
 */
export function parseHelperLogLine(line: string): { level: LogLevel; message: string } {
  const m = /^\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warn|error)\s+(.*)$/.exec(line);
  if (m) return { level: m[1] as LogLevel, message: m[2]! };
  return { level: 'warn', message: line };
}

function forwardHelperLogLine(line: string, log: HelperLog): void {
  if (!line.trim()) return;
  const { level, message } = parseHelperLogLine(line);
  log[level](message);
}
