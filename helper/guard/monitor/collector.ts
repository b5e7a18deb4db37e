/**
 * Builds Snapshots of one container from the HOST: its processes come from
 * the container's cgroup tree, their facts from /proc. Nothing runs inside the
 * container (the agent has root there and could lie to anything that did).
 *
 * Synchronous on purpose: a poll is hundreds of tiny reads of virtual files
 * that the kernel answers from memory; going through libuv's thread pool would
 * cost more than the reads (measured: see the integration test's report) and
 * would let a snapshot straddle many event-loop turns. A poll of ~100
 * processes blocks the loop for a few milliseconds.
 *
 * Incremental: a process already known (same pid and start time) gets only
 * stat, its threads' io and its three standard fds re-read each poll;
 * cmdline, status, exe, its netns and the full fd table are read when it is
 * new, when it exec'd (comm changed), and every `fullScanEvery` polls.
 *
 * Every read is capped and every failure (the process exited, EACCES, a
 * hostile file name) degrades to a missing field, never an exception.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CoiError, ErrorCodes } from '../../errors';
import { containerOfCgroup } from './trace';
import type { FdInfo, ProcessInfo, Snapshot, SocketInfo } from './model';
import {
  ArgvLimits,
  decodeText,
  NetEntry,
  NetTable,
  parseFdTarget,
  parseIo,
  ProcIo,
  parseNetTable,
  parseNetDev,
  parseNsLink,
  parseStat,
  parseStatus,
  splitCmdline,
} from './procfs';

export interface CollectorLimits {
  /** Processes read in detail per poll; the count beyond is still reported. */
  maxProcesses: number;
  /** fds listed per process in a full scan. */
  maxFds: number;
  maxCmdlineBytes: number;
  argv: ArgvLimits;
  /** Bytes read from one net table (tcp, tcp6, udp, udp6) of one namespace. */
  maxNetTableBytes: number;
  maxNetEntries: number;
  /** Cgroup directories walked, and their depth. */
  maxCgroupDirs: number;
  maxCgroupDepth: number;
  maxPathChars: number;
  /** Threads whose I/O counters are summed; beyond, the whole-process counter is used. */
  maxThreads: number;
}

export const DEFAULT_COLLECTOR_LIMITS: CollectorLimits = {
  maxProcesses: 4096,
  maxFds: 512,
  maxCmdlineBytes: 32 * 1024,
  argv: { maxArgs: 256, maxArgChars: 4096 },
  maxNetTableBytes: 8 * 1024 * 1024,
  maxNetEntries: 50_000,
  maxCgroupDirs: 2048,
  maxCgroupDepth: 32,
  maxPathChars: 4096,
  maxThreads: 64,
};

export interface CollectorOptions {
  container: string;
  /** Where procfs is mounted; a test may point it at a directory it built. */
  procRoot?: string;
  /** Where cgroup hierarchies are mounted. */
  cgroupRoot?: string;
  /** Explicit cgroup directories to walk instead of discovering the container's. */
  cgroupDirs?: string[];
  /** Explicit pid source (when no cgroup can be used); wins over cgroups. */
  pids?: () => number[];
  limits?: Partial<CollectorLimits>;
  /** Polls between full re-reads of a known process. */
  fullScanEvery?: number;
  /** Polls between re-reads of the net tables when no unknown socket forces one (8: every 2 s at a 250 ms poll). */
  netRefreshEvery?: number;
  /** Byte order of the kernel's net tables; the host's by default. */
  littleEndian?: boolean;
  now?: () => number;
}

export interface CollectorStats {
  polls: number;
  lastDurationMs: number;
  lastProcesses: number;
  lastFullReads: number;
  lastNetTablesRead: number;
  /** Partial snapshots taken for exec events. */
  peeks: number;
  lastPeekMs: number;
}

/**
 * Controllers to look in on a cgroup v1 host, best first: `pids` holds every
 * task and nothing else; freezer is the one a response will write to.
 */
const V1_CONTROLLERS = ['pids', 'freezer', 'memory', 'cpu', 'cpuacct', 'systemd', 'unified'];

/**
 * The container's cgroup directory: `<root>/<ctrl>/lxc.payload.<name>` on a v1
 * or hybrid host, `<root>/lxc.payload.<name>` on a pure v2 host. Empty when the
 * container is not running (no cgroup).
 */
export function findContainerCgroup(container: string, cgroupRoot = '/sys/fs/cgroup'): string | undefined {
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$/.test(container)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `not a container name: ${JSON.stringify(container.slice(0, 80))}`);
  }
  const leaf = `lxc.payload.${container}`;
  const candidates = [path.join(cgroupRoot, leaf), ...V1_CONTROLLERS.map((c) => path.join(cgroupRoot, c, leaf))];
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'cgroup.procs'))) return dir;
  }
  return undefined;
}

/**
 * Every pid in the cgroup and the groups below it (systemd in a container
 * nests dozens). Bounded in directories, depth and pids.
 */
export function listCgroupPids(dirs: readonly string[], limits: Pick<CollectorLimits, 'maxCgroupDirs' | 'maxCgroupDepth'> = DEFAULT_COLLECTOR_LIMITS): { pids: number[]; dirs: number } {
  const pids = new Set<number>();
  const stack: Array<[string, number]> = dirs.map((d) => [d, 0]);
  let visited = 0;
  while (stack.length && visited < limits.maxCgroupDirs) {
    const [dir, depth] = stack.pop() as [string, number];
    visited++;
    const text = readText(path.join(dir, 'cgroup.procs'), 4 * 1024 * 1024);
    if (text) {
      for (const line of text.split('\n')) {
        const n = Number(line);
        if (line && Number.isInteger(n) && n > 0) pids.add(n);
      }
    }
    if (depth >= limits.maxCgroupDepth) continue;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) if (e.isDirectory()) stack.push([path.join(dir, e.name), depth + 1]);
  }
  return { pids: [...pids].sort((a, b) => a - b), dirs: visited };
}

// ── small capped readers ────────────────────────────────────────────────────

/**
 * One scratch buffer for every read: collection is synchronous, so it is never
 * shared between two reads in flight, and a poll does not allocate a fresh
 * 64 KiB buffer for each of its hundreds of tiny files.
 */
let scratch = Buffer.allocUnsafe(64 * 1024);

/** Reads at most `max` bytes; undefined when the file cannot be read. */
function readCapped(file: string, max: number): { bytes: Buffer; capped: boolean } | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    // /proc files report size 0: read until EOF or the cap.
    let total = 0;
    for (;;) {
      if (total > max) break;
      if (total === scratch.length) {
        const bigger = Buffer.allocUnsafe(Math.min(scratch.length * 2, max + 1 + 4096));
        scratch.copy(bigger, 0, 0, total);
        scratch = bigger;
      }
      const n = fs.readSync(fd, scratch, total, Math.min(scratch.length, max + 1) - total, null);
      if (n <= 0) break;
      total += n;
      if (total >= max + 1) break;
    }
    const capped = total > max;
    return { bytes: Buffer.from(scratch.subarray(0, capped ? max : total)), capped };
  } catch {
    return undefined;
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // already gone
    }
  }
}

function readText(file: string, max: number): string | undefined {
  const r = readCapped(file, max);
  return r ? decodeText(r.bytes, max) : undefined;
}

function readLink(file: string, maxChars: number): string | undefined {
  try {
    return decodeText(fs.readlinkSync(file, { encoding: 'buffer' }), maxChars);
  } catch {
    return undefined;
  }
}

// ── the collector ───────────────────────────────────────────────────────────

interface Known {
  info: ProcessInfo;
  cmdline: Buffer;
  lastFullPoll: number;
  /** Non-std fds from the last full scan, re-resolved against fresh net tables each poll. */
  otherFds: FdInfo[];
}

export class ProcessCollector {
  private readonly procRoot: string;
  private readonly cgroupRoot: string;
  private readonly limits: CollectorLimits;
  private readonly fullScanEvery: number;
  private readonly littleEndian: boolean;
  private readonly now: () => number;
  private readonly known = new Map<number, Known>();
  private readonly net = new Map<string, NetCache>();
  private readonly netRefreshEvery: number;
  private readonly statsValue: CollectorStats = { polls: 0, lastDurationMs: 0, lastProcesses: 0, lastFullReads: 0, lastNetTablesRead: 0, peeks: 0, lastPeekMs: 0 };

  constructor(private readonly opts: CollectorOptions) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.limits = { ...DEFAULT_COLLECTOR_LIMITS, ...(opts.limits ?? {}) };
    this.fullScanEvery = Math.max(1, opts.fullScanEvery ?? 8);
    this.netRefreshEvery = Math.max(1, opts.netRefreshEvery ?? 8);
    this.littleEndian = opts.littleEndian ?? os.endianness() === 'LE';
    this.now = opts.now ?? Date.now;
  }

  get stats(): Readonly<CollectorStats> {
    return this.statsValue;
  }

  /** Forget everything known (e.g. after the container restarted). */
  reset(): void {
    this.known.clear();
    this.net.clear();
  }

  /** The pids now in the container. Throws NOT_FOUND when it has no cgroup (not running). */
  pids(): number[] {
    if (this.opts.pids) return [...new Set(this.opts.pids())].filter((n) => Number.isInteger(n) && n > 0);
    const dirs = this.opts.cgroupDirs ?? [findContainerCgroup(this.opts.container, this.cgroupRoot)].filter((d): d is string => !!d);
    if (dirs.length === 0) {
      throw new CoiError(ErrorCodes.NOT_FOUND, `container ${this.opts.container} has no cgroup: is it running?`, {
        details: { cgroupRoot: this.cgroupRoot },
      });
    }
    return listCgroupPids(dirs, this.limits).pids;
  }

  collect(): Snapshot {
    return this.run(undefined);
  }

  /**
   * A partial snapshot at once: the given processes (just exec'd, from the
   * exec watcher) and their ancestors in the container, read before anything
   * else. It leaves what the collector knows of the others alone, and counts
   * as no poll. `partial` is set; `processCount` is the last full count.
   */
  peek(pids: readonly number[]): Snapshot {
    return this.run(pids);
  }

  private lastCount = 0;

  private run(only: readonly number[] | undefined): Snapshot {
    const t0 = performance.now();
    const partial = only !== undefined;
    const poll = partial ? this.statsValue.polls : ++this.statsValue.polls;
    const all = partial ? [] : this.pids();
    const pids = partial ? [...new Set(only)].filter((n) => Number.isInteger(n) && n > 0).slice(0, 64) : all.slice(0, this.limits.maxProcesses);
    const processes = new Map<number, ProcessInfo>();
    let fullReads = 0;

    // Pass 1: per-process facts. Socket fds are resolved in pass 2, once the
    // namespaces' tables are read.
    const pending: Array<{ k: Known; std: FdInfo[] }> = [];
    const queued = new Set(pids);
    for (let i = 0; i < pids.length; i++) {
      const pid = pids[i]!;
      const r = this.readProcess(pid, poll);
      if (!r) continue;
      if (r.full) fullReads++;
      pending.push({ k: r.known, std: r.std });
      // A peek follows the chain up while it stays in the container.
      const ppid = r.known.info.ppid;
      if (partial && ppid > 1 && !queued.has(ppid) && pids.length < 96 && this.inContainer(ppid)) {
        queued.add(ppid);
        pids.push(ppid);
      }
    }

    // Pass 2: net tables, per network namespace (a container's processes
    // usually share one). Reading /proc/<pid>/net/tcp walks the kernel's whole
    // established-hash (milliseconds on a big host, whatever the namespace
    // holds), so tables are re-read only when a socket we cannot resolve shows
    // up, or every `netRefreshEvery` polls to follow state changes.
    const byNs = new Map<string, Known[]>();
    for (const { k } of pending) {
      const ns = nsKey(k.info);
      const list = byNs.get(ns);
      if (list) list.push(k);
      else byNs.set(ns, [k]);
    }
    let tablesRead = 0;
    for (const [ns, members] of byNs) {
      const cache = this.net.get(ns);
      const unknown = (inode: number) => cache !== undefined && !cache.byInode.has(inode) && !cache.missing.has(inode);
      const stale = !cache || poll - cache.readAtPoll >= this.netRefreshEvery || members.some((k) => socketInodes(k).some(unknown));
      if (cache && !stale) continue;
      const fresh: NetCache = { byInode: new Map(), all: [], missing: new Set(), readAtPoll: poll };
      for (const table of ['tcp', 'tcp6', 'udp', 'udp6'] as NetTable[]) {
        // Any member will do: they all see the same namespace.
        const text = readText(path.join(this.procRoot, String(members[0]?.info.pid), 'net', table), this.limits.maxNetTableBytes);
        if (text === undefined) continue;
        tablesRead++;
        for (const e of parseNetTable(text, table, this.littleEndian, this.limits.maxNetEntries)) {
          const si = toSocketInfo(e);
          // inode 0 is a socket no process holds any more (TIME_WAIT, closing):
          // nothing to resolve, but it still tells where the container connected.
          if (si.inode === 0) fresh.all.push(si);
          else if (!fresh.byInode.has(si.inode)) {
            fresh.byInode.set(si.inode, si);
            fresh.all.push(si);
          }
        }
      }
      // Sockets that are not inet (unix socketpairs on a node child's stdio),
      // or not yet connected: remembered so they do not force a re-read each poll.
      for (const k of members) for (const inode of socketInodes(k)) if (!fresh.byInode.has(inode)) fresh.missing.add(inode);
      this.net.set(ns, fresh);
    }
    if (!partial) for (const ns of this.net.keys()) if (!byNs.has(ns)) this.net.delete(ns);
    // Interface counters are cheap (no hash walk): every poll, every namespace.
    let netdev: Snapshot['netdev'];
    for (const members of partial ? [] : byNs.values()) {
      const text = readText(path.join(this.procRoot, String(members[0]?.info.pid), 'net', 'dev'), 256 * 1024);
      if (text === undefined) continue;
      const t = parseNetDev(text);
      netdev = { rxBytes: (netdev?.rxBytes ?? 0) + t.rxBytes, txBytes: (netdev?.txBytes ?? 0) + t.txBytes };
    }
    const connections: SocketInfo[] = [];
    for (const c of this.net.values()) connections.push(...c.all);
    const resolve = (inode: number, ns: string): SocketInfo | undefined => {
      // Own namespace first; a socket made in one namespace and used after a
      // setns() is still found in the other tables we hold.
      const own = this.net.get(ns)?.byInode.get(inode);
      if (own) return own;
      for (const t of this.net.values()) {
        const found = t.byInode.get(inode);
        if (found) return found;
      }
      return undefined;
    };

    for (const { k, std } of pending) {
      const ns = nsKey(k.info);
      const fds = [...std, ...k.otherFds].map((f) => {
        if (f.kind !== 'socket' || f.inode === undefined) return f;
        const socket = resolve(f.inode, ns);
        return socket ? { ...f, socket } : { fd: f.fd, target: f.target, kind: f.kind, inode: f.inode };
      });
      const info: ProcessInfo = { ...k.info, fds };
      k.info = info;
      processes.set(info.pid, info);
    }

    const takenAt = this.now();
    const s = this.statsValue;
    if (partial) {
      s.peeks++;
      s.lastPeekMs = performance.now() - t0;
      return { container: this.opts.container, takenAt, monotonicMs: performance.now(), processes, processCount: this.lastCount, truncated: false, connections, partial: true };
    }
    // Forget processes that are gone.
    for (const pid of this.known.keys()) if (!processes.has(pid)) this.known.delete(pid);

    s.lastDurationMs = performance.now() - t0;
    s.lastProcesses = processes.size;
    s.lastFullReads = fullReads;
    s.lastNetTablesRead = tablesRead;
    this.lastCount = all.length;
    const snapshot: Snapshot = {
      container: this.opts.container,
      takenAt,
      monotonicMs: performance.now(),
      processes,
      processCount: all.length,
      truncated: all.length > pids.length,
      connections,
    };
    if (netdev) snapshot.netdev = netdev;
    return snapshot;
  }

  /** For a peek's walk up the chain: a process known from a poll, or whose cgroup is the container's. */
  private inContainer(pid: number): boolean {
    if (this.known.has(pid)) return true;
    if (this.opts.pids || this.opts.cgroupDirs) return false;
    const text = readText(this.proc(pid, 'cgroup'), 16 * 1024);
    return text !== undefined && containerOfCgroup(text) === this.opts.container;
  }

  private proc(pid: number, ...parts: string[]): string {
    return path.join(this.procRoot, String(pid), ...parts);
  }

  /** Reads one process; undefined when it is gone (or never was a process). */
  private readProcess(pid: number, poll: number): { known: Known; std: FdInfo[]; full: boolean } | undefined {
    const statText = readText(this.proc(pid, 'stat'), 4096);
    const stat = statText === undefined ? undefined : parseStat(statText);
    if (!stat) {
      this.known.delete(pid);
      return undefined;
    }
    const io = this.readOwnIo(pid, stat.numThreads);
    const std = this.readFds(pid, [0, 1, 2]);

    let k = this.known.get(pid);
    const same = k !== undefined && k.info.startTime === stat.startTime;
    // An exec changes comm (bash → sh, → update-check): then, on first sight
    // and on the periodic full read, cmdline is read; an exec that keeps the
    // comm (bash → bash) is seen by the next full read (fullScanEvery polls).
    const due = !same || k === undefined || k.info.comm !== stat.comm || poll - k.lastFullPoll >= this.fullScanEvery;
    let cmd: { bytes: Buffer; capped: boolean } | undefined;
    let cmdline = k?.cmdline ?? Buffer.alloc(0);
    if (due) {
      cmd = readCapped(this.proc(pid, 'cmdline'), this.limits.maxCmdlineBytes);
      cmdline = cmd?.bytes ?? Buffer.alloc(0);
    }
    const exec = same && k !== undefined && (k.info.comm !== stat.comm || !k.cmdline.equals(cmdline));
    const full = due || exec;

    let argv = k?.info.argv ?? [];
    let argvTruncated = k?.info.argvTruncated;
    if (!same || exec) {
      const split = splitCmdline(cmdline, this.limits.argv, cmd?.capped ?? false);
      argv = split.argv;
      argvTruncated = split.truncated || undefined;
    }

    const base: ProcessInfo = {
      pid,
      ppid: stat.ppid,
      comm: stat.comm,
      argv,
      uid: same && k ? k.info.uid : -1,
      startTime: stat.startTime,
      state: stat.state,
      fds: std,
      fdsComplete: false,
    };
    if (argvTruncated) base.argvTruncated = true;
    if (io) base.io = { readBytes: io.rchar, writeBytes: io.wchar, storageReadBytes: io.readBytes, storageWriteBytes: io.writeBytes };

    let otherFds = k?.otherFds ?? [];
    if (full) {
      const statusText = readText(this.proc(pid, 'status'), 16 * 1024);
      const status = statusText === undefined ? {} : parseStatus(statusText);
      if (status.uid !== undefined) base.uid = status.uid;
      const nsPid = status.nsPid?.[status.nsPid.length - 1];
      if (nsPid !== undefined) base.nsPid = nsPid;
      const exe = readLink(this.proc(pid, 'exe'), this.limits.maxPathChars);
      if (exe !== undefined) base.exe = exe;
      const netns = parseNsLink(readLink(this.proc(pid, 'ns', 'net'), 64) ?? '');
      if (netns !== undefined) base.netns = netns;
      const listed = this.listFds(pid);
      otherFds = listed.fds.filter((f) => f.fd > 2);
      base.fdsComplete = listed.complete;
    } else if (k) {
      if (k.info.nsPid !== undefined) base.nsPid = k.info.nsPid;
      if (k.info.exe !== undefined) base.exe = k.info.exe;
      if (k.info.netns !== undefined) base.netns = k.info.netns;
      base.fdsComplete = k.info.fdsComplete;
    }

    if (!k || !same) {
      k = { info: base, cmdline, lastFullPoll: poll, otherFds };
      this.known.set(pid, k);
    } else {
      k.info = base;
      k.cmdline = cmdline;
      k.otherFds = otherFds;
      if (full) k.lastFullPoll = poll;
    }
    return { known: k, std, full };
  }

  /**
   * The I/O this process did itself: the sum over its live threads.
   * /proc/<pid>/io would also include every child it has reaped (the kernel
   * adds a reaped child's counters to its parent's), so a shell running 150
   * short git commands, or the agent after an `npm install` it ran, would
   * look like one process reading tens of MB. Cost: one read per thread (a
   * single-threaded process needs no directory listing). Lost: threads that
   * have exited; children that lived between two polls (network egress still
   * sees what they sent).
   */
  private readOwnIo(pid: number, numThreads: number): ProcIo | undefined {
    let tids: string[];
    if (numThreads <= 1) tids = [String(pid)];
    else {
      try {
        tids = fs.readdirSync(this.proc(pid, 'task'));
      } catch {
        return undefined;
      }
      if (tids.length > this.limits.maxThreads) {
        // Too many to read each poll: the whole-process counter, children included.
        const t = readText(this.proc(pid, 'io'), 4096);
        return t === undefined ? undefined : parseIo(t);
      }
    }
    let sum: ProcIo | undefined;
    for (const tid of tids) {
      const t = readText(this.proc(pid, 'task', tid, 'io'), 4096);
      const io = t === undefined ? undefined : parseIo(t);
      if (!io) continue;
      sum = sum
        ? { rchar: sum.rchar + io.rchar, wchar: sum.wchar + io.wchar, readBytes: sum.readBytes + io.readBytes, writeBytes: sum.writeBytes + io.writeBytes }
        : io;
    }
    return sum;
  }

  private readFds(pid: number, fds: number[]): FdInfo[] {
    const out: FdInfo[] = [];
    for (const fd of fds) {
      const target = readLink(this.proc(pid, 'fd', String(fd)), this.limits.maxPathChars);
      if (target === undefined) continue;
      out.push(fdInfo(fd, target));
    }
    return out;
  }

  private listFds(pid: number): { fds: FdInfo[]; complete: boolean } {
    let names: string[];
    try {
      names = fs.readdirSync(this.proc(pid, 'fd'));
    } catch {
      return { fds: [], complete: false };
    }
    const nums = names.map(Number).filter((n) => Number.isInteger(n) && n >= 0).sort((a, b) => a - b);
    const kept = nums.slice(0, this.limits.maxFds);
    return { fds: this.readFds(pid, kept), complete: kept.length === nums.length };
  }
}

interface NetCache {
  byInode: Map<number, SocketInfo>;
  /** Every inet socket of the namespace at the last read (inode-0 rows included). */
  all: SocketInfo[];
  /** Socket inodes held by processes but absent from the tables at the last read. */
  missing: Set<number>;
  readAtPoll: number;
}

function nsKey(p: ProcessInfo): string {
  return p.netns ?? `pid:${p.pid}`;
}

function socketInodes(k: Known): number[] {
  const out: number[] = [];
  for (const f of k.info.fds) if (f.kind === 'socket' && f.inode !== undefined) out.push(f.inode);
  for (const f of k.otherFds) if (f.kind === 'socket' && f.inode !== undefined) out.push(f.inode);
  return out;
}

function fdInfo(fd: number, target: string): FdInfo {
  const t = parseFdTarget(target);
  const info: FdInfo = { fd, target, kind: t.kind };
  if (t.inode !== undefined) info.inode = t.inode;
  return info;
}

function toSocketInfo(e: NetEntry): SocketInfo {
  return {
    proto: e.proto,
    family: e.family,
    local: { address: e.localAddress, port: e.localPort },
    remote: { address: e.remoteAddress, port: e.remotePort },
    state: e.state,
    inode: e.inode,
  };
}
