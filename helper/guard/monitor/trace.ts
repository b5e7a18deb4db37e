/**
 * What a container's processes do, from the kernel as it happens, so a
 * process is examined the moment it starts and a short-lived one is not
 * missed: `cat /proc/*\/environ | grep -i key` lives 6-18 ms, a 250 ms poll
 * sees it a few times in a hundred.
 *
 * One tracefs instance per watched container (`instances/coi-guard-<guard
 * pid>-<container>`: its own buffer and switches; nothing of the host's
 * tracing is touched), restricted to the container's processes: their pids
 * go into `set_event_pid` (each poll adds the new ones), and with
 * `options/event-fork` the kernel adds every child they fork. Events:
 *
 * - `sched:sched_process_fork`: parent and child, for the chain of a process
 *   that is already gone;
 * - `sched:sched_process_exec`: a new program: the monitor peeks at it at once;
 * - `syscalls:sys_enter_openat` filtered in the kernel to
 *   `/proc/<digits>/environ` (but not init's, /proc/1/environ, which systemd
 *   tools read): reading a process's environment, seen even when the reader
 *   lives for a millisecond.
 *
 * Tracing starts only once the list holds the container's pids: an instance
 * with an empty list traces every process of the host. The list holds
 * numbers, so a number written as its process exits can match a host process
 * after pids wrap: `TraceMembers` decides which events are the container's.
 * Processes entering through `incus exec` are not descendants; the next poll
 * adds them.
 *
 * No native code: tracefs is files. `trace_pipe` is read by a `cat` child
 * (a blocking read in libuv's thread pool would hang the guard's exit),
 * started with `setpriv --pdeathsig KILL` so it dies with a guard killed by -9;
 * instances of dead guards are removed by the next one.
 *
 * Unavailable (no tracefs, not root, a kernel without these events): the
 * monitor polls only, and says so in `coi monitor`.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Log } from '../../log';
import type { PidOwner } from './trace-members';

export type TraceEvent =
  | { kind: 'fork'; pid: number; comm: string; child: number; childComm: string }
  | { kind: 'exec'; pid: number; comm: string; filename: string }
  | { kind: 'environ-open'; pid: number; comm: string }
  /** The kernel dropped events of one CPU (its buffer was full). */
  | { kind: 'lost'; cpu: number };

/** `  <comm>-<pid>  [001] ..... 4011.616566: <event>: <fields>` (comm may hold spaces and dashes). */
const HEADER = /^\s*(.*)-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]\s+\S+\s+\d+\.\d+:\s+(.*)$/;

export function parseTraceLine(line: string): TraceEvent | undefined {
  const lost = /^CPU:(\d+) \[LOST (?:\d+ )?EVENTS\]/.exec(line);
  if (lost) return { kind: 'lost', cpu: Number(lost[1]) };
  const h = HEADER.exec(line);
  if (!h) return undefined;
  const comm = h[1]!.slice(0, 64);
  const pid = Number(h[2]);
  const body = h[3]!;
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  let m = /^sched_process_exec: filename=(.*) pid=(\d+) old_pid=\d+\s*$/.exec(body);
  if (m) return { kind: 'exec', pid: Number(m[2]), comm, filename: m[1]!.slice(0, 4096) };
  m = /^sched_process_fork: comm=(.*) pid=(\d+) child_comm=(.*) child_pid=(\d+)\s*$/.exec(body);
  if (m) return { kind: 'fork', pid: Number(m[2]), comm: m[1]!.slice(0, 64), child: Number(m[4]), childComm: m[3]!.slice(0, 64) };
  if (/^sys_openat\(/.test(body)) return { kind: 'environ-open', pid, comm };
  return undefined;
}

/** The container a process belongs to, from the text of /proc/<pid>/cgroup. */
export function containerOfCgroup(text: string): string | undefined {
  const m = /\/lxc\.payload\.([A-Za-z0-9][A-Za-z0-9-]{0,127})(?:\/|$)/m.exec(text);
  return m?.[1];
}

/** Where tracefs is mounted, from /proc/mounts text. */
export function tracefsMount(mounts: string): string | undefined {
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f[2] === 'tracefs' && f[1]) return f[1].replace(/\\040/g, ' ');
  }
  return undefined;
}

const INSTANCE_PREFIX = 'coi-guard-';
/**
 * Reading /proc/<digits>/environ, except the container's init's: systemd's
 * generators read /proc/1/environ at every boot and reload (the container
 * manager's variables, not the agent's).
 */
export const ENVIRON_FILTER = 'filename.ustring ~ "/proc/[0-9]*/environ" && filename.ustring != "/proc/1/environ"';

const EVENTS = [
  ['sched', 'sched_process_fork'],
  ['sched', 'sched_process_exec'],
  ['syscalls', 'sys_enter_openat'],
] as const;

/**
 * Finds tracefs (mounting it at /sys/kernel/tracing on hosts without
 * systemd), and removes the instances of guards that died. Once per guard.
 */
export async function prepareTracefs(log: Log, mount = true): Promise<{ root: string } | { unavailable: string }> {
  if (process.getuid?.() !== 0) return { unavailable: 'not root' };
  let root = tracefsMount(readText('/proc/mounts') ?? '');
  if (!root && mount) {
    const target = '/sys/kernel/tracing';
    if ((await runQuiet('mount', ['-t', 'tracefs', 'nodev', target])) === 0) root = target;
  }
  if (!root) return { unavailable: 'tracefs is not mounted and could not be mounted' };
  for (const [sys, ev] of EVENTS) {
    if (!fs.existsSync(path.join(root, 'events', sys, ev))) return { unavailable: `the kernel has no ${sys}:${ev} trace event` };
  }
  cleanStale(path.join(root, 'instances'), log);
  return { root };
}

export interface TraceSessionOptions {
  root: string;
  container: string;
  log: Log;
  onEvent: (e: TraceEvent) => void;
}

export class TraceSession {
  private child: ChildProcess | undefined;
  private closed = false;
  private partial = '';
  private readonly tracked = new Set<number>();
  private started = false;
  events = 0;

  private constructor(
    readonly dir: string,
    private readonly o: TraceSessionOptions,
  ) {}

  static open(o: TraceSessionOptions): TraceSession | { unavailable: string } {
    const dir = path.join(o.root, 'instances', `${INSTANCE_PREFIX}${process.pid}-${o.container}`.slice(0, 200));
    try {
      if (fs.existsSync(dir)) removeInstance(dir);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'buffer_size_kb'), '128');
      fs.writeFileSync(path.join(dir, 'options', 'event-fork'), '1');
      fs.writeFileSync(path.join(dir, 'events', 'syscalls', 'sys_enter_openat', 'filter'), ENVIRON_FILTER);
      // Off until the pid list is set (`track`): a new instance is on, for every process.
      fs.writeFileSync(path.join(dir, 'tracing_on'), '0');
      // One clock for all CPUs: a fork on one is read before its child's exec on another.
      try {
        fs.writeFileSync(path.join(dir, 'trace_clock'), 'global');
      } catch {
        // an older kernel: per-CPU clocks, in step on today's hardware
      }
    } catch (e) {
      disable(dir);
      removeInstance(dir);
      return { unavailable: `cannot set up a trace instance: ${(e as Error).message}` };
    }
    const s = new TraceSession(dir, o);
    s.spawnReader();
    return s;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /**
   * Traces these processes (and, through event-fork, all they fork from now
   * on). Pass every pid of the container at each poll: only new ones are
   * written; the kernel drops those that exit while listed. The first call
   * with pids starts the trace.
   */
  track(pids: Iterable<number>): void {
    if (this.closed) return;
    const now = new Set(pids);
    const fresh: number[] = [];
    for (const p of now) if (!this.tracked.has(p)) fresh.push(p);
    for (const p of this.tracked) if (!now.has(p)) this.tracked.delete(p);
    if (!fresh.length) return;
    try {
      // O_APPEND adds to the list; a plain write would replace it.
      fs.writeFileSync(path.join(this.dir, 'set_event_pid'), fresh.join(' '), { flag: 'a' });
      for (const p of fresh) this.tracked.add(p);
    } catch (e) {
      // A number the kernel refuses fails the whole write: add them one by one.
      for (const p of fresh) {
        try {
          fs.writeFileSync(path.join(this.dir, 'set_event_pid'), String(p), { flag: 'a' });
          this.tracked.add(p);
        } catch {
          // gone
        }
      }
      this.o.log.debug(`trace ${this.o.container}: ${(e as Error).message}`);
    }
    if (!this.started && this.tracked.size) this.start();
  }

  private start(): void {
    try {
      for (const [sys, ev] of EVENTS) fs.writeFileSync(path.join(this.dir, 'events', sys, ev, 'enable'), '1');
      fs.writeFileSync(path.join(this.dir, 'tracing_on'), '1');
      this.started = true;
    } catch (e) {
      this.o.log.warn(`trace ${this.o.container}: cannot start: ${(e as Error).message}; polling only`);
      this.close();
    }
  }

  private spawnReader(): void {
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'cat', path.join(this.dir, 'trace_pipe')], { stdio: ['ignore', 'pipe', 'ignore'] });
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => this.onData(chunk));
    child.on('error', (e) => this.o.log.warn(`trace ${this.o.container}: ${e.message}`));
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.closed) return removeInstance(this.dir);
      this.o.log.warn(`trace ${this.o.container}: reader exited (${signal ?? code}); restarting in 1 s`);
      setTimeout(() => {
        if (!this.closed) this.spawnReader();
      }, 1_000).unref();
    });
  }

  private onData(chunk: string): void {
    const lines = (this.partial + chunk).split('\n');
    this.partial = (lines.pop() ?? '').slice(-8192);
    for (const line of lines) {
      const e = parseTraceLine(line);
      if (!e) continue;
      this.events++;
      try {
        this.o.onEvent(e);
      } catch (err) {
        this.o.log.warn(`trace ${this.o.container}: handler: ${(err as Error).message}`);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    disable(this.dir);
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    else removeInstance(this.dir);
  }
}

function disable(dir: string): void {
  for (const [sys, ev] of EVENTS) {
    try {
      fs.writeFileSync(path.join(dir, 'events', sys, ev, 'enable'), '0');
    } catch {
      // not there
    }
  }
}

/** Whose a host pid is now: this container's, another's (the host's), or gone. */
export function pidOwner(pid: number, container: string, procRoot = '/proc'): PidOwner {
  const text = readText(path.join(procRoot, String(pid), 'cgroup'));
  if (text === undefined) return 'gone';
  return containerOfCgroup(text) === container ? 'ours' : 'other';
}

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

function removeInstance(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // busy (a reader still open) or gone; the next guard retries
  }
}

/** Instances left by guards that died (kill -9): their readers died with them (pdeathsig). */
function cleanStale(instances: string, log: Log): void {
  let names: string[];
  try {
    names = fs.readdirSync(instances);
  } catch {
    return;
  }
  for (const n of names) {
    const m = new RegExp(`^${INSTANCE_PREFIX}(\\d+)(?:-|$)`).exec(n);
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    const dir = path.join(instances, n);
    disable(dir);
    try {
      fs.rmdirSync(dir);
      log.debug(`removed the stale trace instance ${n}`);
    } catch (e) {
      log.debug(`could not remove the stale trace instance ${n}: ${(e as Error).message}`);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function runQuiet(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('error', () => resolve(-1));
    c.on('exit', (code) => resolve(code ?? -1));
  });
}
