/**
 * What the monitor knows about a container at one instant, as plain values:
 * the processes in its cgroup, their open stdio/sockets and I/O counters, and
 * the sockets of its network namespace. The collector builds it from /proc; the
 * detectors only ever read it, so they can be tested on fixtures.
 *
 * Every string in here came from inside the container and is hostile data:
 * keep it as data (JSON-escaped in the audit log, escaped again by whatever
 * renders it), never interpret it.
 */
import { z } from 'zod';
import { once } from '../../lazy';
import type { FdKind, SocketState } from './procfs';

export interface SocketEndpoint {
  address: string;
  port: number;
}

/** An inet socket from the container's network namespace tables. */
export interface SocketInfo {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  local: SocketEndpoint;
  remote: SocketEndpoint;
  state: SocketState;
  inode: number;
}

export interface FdInfo {
  fd: number;
  /** The link text: a path, "socket:[123]", "pipe:[456]", "anon_inode:[eventfd]"… */
  target: string;
  kind: FdKind;
  inode?: number;
  /** Set when the socket inode was found in a net table (tcp/udp, v4/v6); unix sockets stay unresolved. */
  socket?: SocketInfo;
}

/**
 * The process's OWN I/O: summed over its live threads, so the counters of
 * children it reaped (which the kernel folds into /proc/<pid>/io) are not in it.
 */
export interface ProcessIo {
  /** Cumulative bytes through read()-family syscalls (rchar): files, pipes, sockets. */
  readBytes: number;
  /** Cumulative bytes through write()-family syscalls (wchar). */
  writeBytes: number;
  /** Cumulative bytes from storage (read_bytes); 0 for page-cache hits. */
  storageReadBytes?: number;
  storageWriteBytes?: number;
}

export interface ProcessInfo {
  /** Host pid. */
  pid: number;
  ppid: number;
  /** The pid inside the container, when the kernel told us (NSpid). */
  nsPid?: number;
  comm: string;
  /** Path of the executable as the process's mount namespace sees it; may end in " (deleted)". */
  exe?: string;
  argv: string[];
  argvTruncated?: boolean;
  /** Host uid (container root is e.g. 1000000 with an idmap). -1 when unreadable. */
  uid: number;
  /** Clock ticks after boot; with pid, the identity of this process across snapshots. */
  startTime: number;
  state?: string;
  /** Network namespace inode, to resolve sockets against the right tables. */
  netns?: string;
  /** stdin/stdout/stderr always; every fd when `fdsComplete`. */
  fds: FdInfo[];
  fdsComplete: boolean;
  io?: ProcessIo;
}

export interface Snapshot {
  container: string;
  /** Wall-clock time (ms since epoch) at the end of collection. */
  takenAt: number;
  /** A monotonic clock (ms) for rates: immune to wall-clock jumps. */
  monotonicMs?: number;
  processes: Map<number, ProcessInfo>;
  /** Processes in the cgroup, including any not read in detail (limits, races). */
  processCount: number;
  /** True when limits kept some processes out of `processes`. */
  truncated: boolean;
  /** Every inet socket of the namespaces the container's processes are in. */
  connections: SocketInfo[];
  /** Cumulative bytes through the container's interfaces (all but loopback, all its namespaces). */
  netdev?: { rxBytes: number; txBytes: number };
  /**
   * Only some processes (a peek at new ones and their ancestors): good for
   * judging a process by itself, not for counts, rates or comparisons.
   */
  partial?: boolean;
}

/** pid alone is reused by the kernel; pid + start time names one process. */
export function processKey(p: Pick<ProcessInfo, 'pid' | 'startTime'>): string {
  return `${p.pid}:${p.startTime}`;
}

export interface LineageEntry {
  pid: number;
  comm: string;
  argv: string[];
}

/**
 * The process and its ancestors, nearest first, up to the first one whose
 * parent is not in the snapshot (the container's init, or the top of the
 * captured set). Bounded, and safe against a cycle in hostile or racy data.
 */
export function lineage(snapshot: Snapshot, pid: number, max = 32): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  const seen = new Set<number>();
  let p = snapshot.processes.get(pid);
  while (p && out.length < max && !seen.has(p.pid)) {
    out.push(p);
    seen.add(p.pid);
    p = p.ppid === p.pid ? undefined : snapshot.processes.get(p.ppid);
  }
  return out;
}

/** The lineage as evidence: short, with each argv capped so an event stays small. */
export function lineageEvidence(snapshot: Snapshot, pid: number, maxArgs = 16, maxChars = 512): LineageEntry[] {
  return lineage(snapshot, pid).map((p) => ({ pid: p.pid, comm: p.comm, argv: capArgv(p.argv, maxArgs, maxChars) }));
}

export function capArgv(argv: readonly string[], maxArgs = 64, maxChars = 2048): string[] {
  return argv.slice(0, maxArgs).map((a) => (a.length > maxChars ? `${a.slice(0, maxChars)}…` : a));
}

/** ppid → children pids, for walking down a tree. */
export function childrenIndex(snapshot: Snapshot): Map<number, number[]> {
  const idx = new Map<number, number[]>();
  for (const p of snapshot.processes.values()) {
    if (p.ppid === p.pid) continue;
    const list = idx.get(p.ppid);
    if (list) list.push(p.pid);
    else idx.set(p.ppid, [p.pid]);
  }
  return idx;
}

/** The process and all its descendants in the snapshot (bounded). */
export function subtree(snapshot: Snapshot, pid: number, index = childrenIndex(snapshot), max = 4096): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  const seen = new Set<number>();
  const stack = [pid];
  while (stack.length && out.length < max) {
    const cur = stack.pop() as number;
    if (seen.has(cur)) continue;
    seen.add(cur);
    const p = snapshot.processes.get(cur);
    if (!p) continue;
    out.push(p);
    for (const c of index.get(cur) ?? []) stack.push(c);
  }
  return out;
}

export interface IoDelta {
  pid: number;
  readBytes: number;
  writeBytes: number;
}

export interface SnapshotDelta {
  /** Processes in `current` that were not in `previous` (by pid + start time). */
  added: ProcessInfo[];
  /** Processes in `previous` that are not in `current`. */
  gone: ProcessInfo[];
  /** Bytes moved since `previous` by processes present in both. */
  io: Map<number, IoDelta>;
  elapsedMs: number;
}

export function elapsedMs(from: Snapshot, to: Snapshot): number {
  if (from.monotonicMs !== undefined && to.monotonicMs !== undefined) return to.monotonicMs - from.monotonicMs;
  return to.takenAt - from.takenAt;
}

/** What changed between two snapshots of the same container. Without `previous`, everything is new. */
export function diffSnapshots(previous: Snapshot | undefined, current: Snapshot): SnapshotDelta {
  const added: ProcessInfo[] = [];
  const gone: ProcessInfo[] = [];
  const io = new Map<number, IoDelta>();
  for (const p of current.processes.values()) {
    const before = previous?.processes.get(p.pid);
    if (!before || before.startTime !== p.startTime) {
      added.push(p);
      continue;
    }
    if (p.io && before.io) {
      io.set(p.pid, {
        pid: p.pid,
        // Counters only grow; a decrease means a racy read, not negative bytes.
        readBytes: Math.max(0, p.io.readBytes - before.io.readBytes),
        writeBytes: Math.max(0, p.io.writeBytes - before.io.writeBytes),
      });
    }
  }
  if (previous) {
    for (const p of previous.processes.values()) {
      const now = current.processes.get(p.pid);
      if (!now || now.startTime !== p.startTime) gone.push(p);
    }
  }
  return { added, gone, io, elapsedMs: previous ? elapsedMs(previous, current) : 0 };
}

/** Standard streams (fd 0, 1, 2) that are resolved inet sockets with a peer. */
export function networkStdio(p: ProcessInfo): FdInfo[] {
  return p.fds.filter((f) => f.fd <= 2 && f.socket !== undefined && isConnected(f.socket));
}

/** A socket with a peer: TCP past LISTEN with a remote port, or a connected UDP socket. */
export function isConnected(s: SocketInfo): boolean {
  if (s.remote.port === 0) return false;
  return s.proto === 'udp' || (s.state !== 'LISTEN' && s.state !== 'CLOSE' && s.state !== 'TIME_WAIT');
}

// ── JSON form (fixtures, forensics) ─────────────────────────────────────────

/** Built on first use (see helper/lazy.ts): only fixtures and forensics read this form. */
export const snapshotJsonSchema = once(() => {
  const endpointSchema = z.object({ address: z.string(), port: z.number().int() });
  const socketSchema = z.object({
    proto: z.enum(['tcp', 'udp']),
    family: z.union([z.literal(4), z.literal(6)]),
    local: endpointSchema,
    remote: endpointSchema,
    state: z.enum(['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'UNKNOWN']),
    inode: z.number().int(),
  });
  const fdSchema = z.object({
    fd: z.number().int(),
    target: z.string(),
    kind: z.enum(['socket', 'pipe', 'file', 'tty', 'anon', 'other']),
    inode: z.number().int().optional(),
    socket: socketSchema.optional(),
  });
  const processSchema = z.object({
    pid: z.number().int(),
    ppid: z.number().int(),
    nsPid: z.number().int().optional(),
    comm: z.string(),
    exe: z.string().optional(),
    argv: z.array(z.string()),
    argvTruncated: z.boolean().optional(),
    uid: z.number().int(),
    startTime: z.number(),
    state: z.string().optional(),
    netns: z.string().optional(),
    fds: z.array(fdSchema),
    fdsComplete: z.boolean(),
    io: z.object({ readBytes: z.number(), writeBytes: z.number(), storageReadBytes: z.number().optional(), storageWriteBytes: z.number().optional() }).optional(),
  });
  const snapshotJsonSchema = z.object({
    container: z.string(),
    takenAt: z.number(),
    monotonicMs: z.number().optional(),
    processes: z.array(processSchema),
    processCount: z.number().int(),
    truncated: z.boolean(),
    connections: z.array(socketSchema),
    netdev: z.object({ rxBytes: z.number(), txBytes: z.number() }).optional(),
    partial: z.boolean().optional(),
  });
  return snapshotJsonSchema;
});
export type SnapshotJson = z.infer<ReturnType<typeof snapshotJsonSchema>>;

export function snapshotToJson(s: Snapshot): SnapshotJson {
  return { ...s, processes: [...s.processes.values()] };
}

/** Validates as it converts: fixture files and forensic copies are files, not trusted values. */
export function snapshotFromJson(value: unknown): Snapshot {
  const j = snapshotJsonSchema().parse(value);
  const processes = new Map<number, ProcessInfo>();
  for (const p of j.processes) processes.set(p.pid, p);
  return { ...j, processes };
}
