/**
 * Who is on the other end of a unix socket. Node exposes no SO_PEERCRED, so we
 * ask the kernel's sock_diag through `ss -xp`: our accepted socket's inode
 * leads to the peer's inode, that to the peer's pid, and /proc to its uid and
 * groups. Parsing is pure and unit-tested; the lookup itself is a small runner.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type { Socket } from 'node:net';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gids: number[];
}

/** From `ss -xpnH` output: the peer inode and the pid that holds it, for our socket's inode. */
export function findPeerPid(ssOutput: string, localInode: number): { peerInode: number; pid: number } | undefined {
  const rows = ssOutput.split('\n').map((l) => l.trim()).filter(Boolean).map(parseSsRow).filter((r): r is SsRow => r !== undefined);
  const ours = rows.find((r) => r.localInode === localInode);
  if (!ours) return undefined;
  const peer = rows.find((r) => r.localInode === ours.peerInode);
  if (!peer || peer.pids.length === 0) return undefined;
  return { peerInode: ours.peerInode, pid: peer.pids[0]! };
}

interface SsRow {
  localInode: number;
  peerInode: number;
  pids: number[];
}

// u_str ESTAB 0 0 /run/coi/guard.sock 17044 * 17747 users:(("node",pid=14313,fd=21))
// The local address may be "*" or a path (paths cannot contain spaces for our sockets).
function parseSsRow(line: string): SsRow | undefined {
  const m = /^u_\S+\s+\S+\s+\d+\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)(?:\s+(.*))?$/.exec(line);
  if (!m) return undefined;
  const pids = [...(m[3] ?? '').matchAll(/pid=(\d+)/g)].map((x) => Number(x[1]));
  return { localInode: Number(m[1]), peerInode: Number(m[2]), pids };
}

/** Uid and all group ids of a process, from /proc/<pid>/status. */
export function parseProcStatus(status: string): { uid: number; gids: number[] } | undefined {
  const uid = /^Uid:\s+(\d+)/m.exec(status);
  const gid = /^Gid:\s+(\d+)/m.exec(status);
  const groups = /^Groups:\s*([\d\s]*)$/m.exec(status);
  if (!uid || !gid) return undefined;
  const gids = new Set<number>([Number(gid[1])]);
  for (const g of (groups?.[1] ?? '').split(/\s+/).filter(Boolean)) gids.add(Number(g));
  return { uid: Number(uid[1]), gids: [...gids] };
}

export async function peerCredentials(socket: Socket): Promise<PeerCredentials | undefined> {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const link = await fs.readlink(`/proc/self/fd/${fd}`).catch(() => '');
  const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
  if (!inode) return undefined;
  const out = await new Promise<string>((resolve) =>
    execFile('ss', ['-xpnH'], { maxBuffer: 32 * 1024 * 1024 }, (err, stdout) => resolve(err ? '' : stdout)),
  );
  const peer = findPeerPid(out, Number(inode));
  if (!peer) return undefined;
  const status = await fs.readFile(`/proc/${peer.pid}/status`, 'utf8').catch(() => '');
  const ids = parseProcStatus(status);
  return ids ? { pid: peer.pid, ...ids } : undefined;
}
