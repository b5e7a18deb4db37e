/**
 * Small builders for synthetic snapshots (the attack fixtures) and a loader
 * for the recorded benign ones (test/fixtures/monitor/benign, made by capture.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FdInfo, ProcessInfo, Snapshot, SocketInfo } from '../../../helper/guard/monitor/model';
import { snapshotFromJson } from '../../../helper/guard/monitor/model';
import type { SocketState } from '../../../helper/guard/monitor/procfs';

let inodes = 100_000;

export function sock(remote: string, port: number, opts: { proto?: 'tcp' | 'udp'; state?: SocketState; local?: string; localPort?: number; inode?: number } = {}): SocketInfo {
  return {
    proto: opts.proto ?? 'tcp',
    family: remote.includes(':') ? 6 : 4,
    local: { address: opts.local ?? '10.10.0.5', port: opts.localPort ?? 40000 + (inodes % 20000) },
    remote: { address: remote, port },
    state: opts.state ?? 'ESTABLISHED',
    inode: opts.inode ?? ++inodes,
  };
}

export function sockFd(fd: number, s: SocketInfo): FdInfo {
  return { fd, target: `socket:[${s.inode}]`, kind: 'socket', inode: s.inode, socket: s };
}
export function pipeFd(fd: number, inode: number): FdInfo {
  return { fd, target: `pipe:[${inode}]`, kind: 'pipe', inode };
}
export function fileFd(fd: number, p: string): FdInfo {
  return { fd, target: p, kind: p.startsWith('/dev/pts/') ? 'tty' : 'file' };
}
/** A unix socketpair end: a socket inode no inet table knows. */
export function unixFd(fd: number, inode: number): FdInfo {
  return { fd, target: `socket:[${inode}]`, kind: 'socket', inode };
}
export const tty = (n = 0): FdInfo[] => [0, 1, 2].map((fd) => fileFd(fd, `/dev/pts/${n}`));

export function proc(pid: number, ppid: number, argv: string[], opts: Partial<ProcessInfo> = {}): ProcessInfo {
  return {
    pid,
    ppid,
    comm: (opts.comm ?? path.basename(argv[0] ?? '?')).slice(0, 15),
    argv,
    uid: 1000000,
    startTime: 1000 + pid,
    fds: tty(),
    fdsComplete: true,
    ...opts,
  };
}

export function snap(processes: ProcessInfo[], opts: Partial<Omit<Snapshot, 'processes'>> = {}): Snapshot {
  const map = new Map<number, ProcessInfo>();
  for (const p of processes) map.set(p.pid, p);
  const connections = opts.connections ?? dedupeSockets(processes);
  return {
    container: 'coi-test-1',
    takenAt: 1_740_000_000_000,
    monotonicMs: 10_000,
    processCount: processes.length,
    truncated: false,
    ...opts,
    connections,
    processes: map,
  };
}

function dedupeSockets(ps: ProcessInfo[]): SocketInfo[] {
  const m = new Map<number, SocketInfo>();
  for (const p of ps) for (const f of p.fds) if (f.socket) m.set(f.socket.inode, f.socket);
  return [...m.values()];
}

/** The container's init and an agent under it, parents for the fixtures' processes. */
export const init = proc(100, 1, ['/sbin/init'], { comm: 'systemd', fds: [fileFd(0, '/dev/null'), fileFd(1, '/dev/null'), fileFd(2, '/dev/null')] });
export const agent = (s?: SocketInfo) =>
  proc(200, 100, ['node', '/usr/local/bin/claude'], { comm: 'claude', fds: [...tty(0), ...(s ? [sockFd(20, s)] : [])] });

export interface BenignFixture {
  scenario: string;
  description: string;
  snapshots: Snapshot[];
}

export function loadBenign(): BenignFixture[] {
  const dir = path.join(process.cwd(), 'test/fixtures/monitor/benign');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const j = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { scenario: string; description: string; snapshots: unknown[] };
      return { scenario: j.scenario, description: j.description, snapshots: j.snapshots.map(snapshotFromJson) };
    });
}
