/**
 * Pure parsers for the /proc files the collector reads. No I/O here: every
 * function takes bytes or text and returns values, so each can be tested on
 * hostile input without a process to read from.
 *
 * Everything read from /proc about a container's process is controlled by
 * whoever runs in that container (they choose argv, comm, file names, and can
 * even rename the binary). So: decode bytes with replacement (never throw on
 * invalid UTF-8), cap every length, and treat nothing as trusted structure
 * beyond what the kernel itself formats (stat's numeric fields, net tables).
 */
import { formatIPv6, normalizeAddress } from './ip';

// ── text ────────────────────────────────────────────────────────────────────

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** Bytes to text: invalid UTF-8 becomes U+FFFD, never an exception. Caps at maxChars. */
export function decodeText(bytes: Uint8Array, maxChars = 4096): string {
  const text = utf8.decode(bytes.length > maxChars * 4 ? bytes.subarray(0, maxChars * 4) : bytes);
  return text.length > maxChars ? text.slice(0, maxChars) : text;
}

export interface ArgvLimits {
  /** Arguments kept; the rest are dropped and `truncated` is set. */
  maxArgs: number;
  /** Characters kept per argument. */
  maxArgChars: number;
}

export const DEFAULT_ARGV_LIMITS: ArgvLimits = { maxArgs: 256, maxArgChars: 4096 };

/**
 * /proc/<pid>/cmdline is argv joined by NUL (with a trailing NUL). A process may
 * rewrite it (setproctitle) into one space-separated string: that is kept as
 * one argument, we do not guess at splitting. `truncated` is set when the read
 * was capped upstream (pass `readCapped`) or when limits dropped anything.
 */
export function splitCmdline(bytes: Uint8Array, limits: ArgvLimits = DEFAULT_ARGV_LIMITS, readCapped = false): { argv: string[]; truncated: boolean } {
  const argv: string[] = [];
  let truncated = readCapped;
  let start = 0;
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0) end--;
  if (end === 0) return { argv, truncated };
  for (let i = 0; i <= end; i++) {
    if (i === end || bytes[i] === 0) {
      if (argv.length >= limits.maxArgs) {
        truncated = true;
        break;
      }
      const part = bytes.subarray(start, i);
      const text = decodeText(part, limits.maxArgChars);
      if (part.length > limits.maxArgChars) truncated = true;
      argv.push(text);
      start = i + 1;
    }
  }
  return { argv, truncated };
}

/** A file name from a readlink, minus the trailing " (deleted)" the kernel adds to unlinked files. */
export function stripDeleted(path: string): { path: string; deleted: boolean } {
  return path.endsWith(' (deleted)') ? { path: path.slice(0, -' (deleted)'.length), deleted: true } : { path, deleted: false };
}

/** Last path component, what people call a program by. */
export function baseName(path: string): string {
  const p = stripDeleted(path).path;
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

// ── /proc/<pid>/stat ────────────────────────────────────────────────────────

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgrp: number;
  session: number;
  ttyNr: number;
  numThreads: number;
  /** Clock ticks after boot (field 22); with pid, the identity of a process across polls. */
  startTime: number;
}

/**
 * comm sits in parentheses and may itself contain ")" and spaces (a process
 * chooses its comm: `prctl(PR_SET_NAME, "x) R 1 ")`), so the numeric fields
 * start after the LAST ")" in the line.
 */
export function parseStat(text: string): ProcStat | undefined {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  const f = text.slice(close + 1).trim().split(/\s+/);
  // f[0] is field 3 (state); field n is f[n - 3].
  const num = (n: number): number => Number(f[n - 3]);
  const state = f[0] ?? '';
  const stat: ProcStat = {
    pid,
    comm: comm.length > 64 ? comm.slice(0, 64) : comm,
    state: state.slice(0, 2),
    ppid: num(4),
    pgrp: num(5),
    session: num(6),
    ttyNr: num(7),
    numThreads: num(20),
    startTime: num(22),
  };
  if (!Number.isInteger(stat.pid) || !Number.isInteger(stat.ppid) || !Number.isFinite(stat.startTime)) return undefined;
  return stat;
}

// ── /proc/<pid>/status ──────────────────────────────────────────────────────

export interface ProcStatus {
  /** Real uid as the host sees it (container root is e.g. 1000000 under an idmap). */
  uid?: number;
  euid?: number;
  /** The pid chain through nested pid namespaces; the last one is the pid inside the container. */
  nsPid?: number[];
}

export function parseStatus(text: string): ProcStatus {
  const out: ProcStatus = {};
  for (const line of text.split('\n')) {
    if (line.startsWith('Uid:')) {
      const ids = line.slice(4).trim().split(/\s+/).map(Number);
      if (Number.isInteger(ids[0])) out.uid = ids[0];
      if (Number.isInteger(ids[1])) out.euid = ids[1];
    } else if (line.startsWith('NSpid:')) {
      const ids = line.slice(6).trim().split(/\s+/).map(Number).filter(Number.isInteger);
      if (ids.length) out.nsPid = ids.slice(0, 8);
    }
  }
  return out;
}

// ── /proc/<pid>/io ──────────────────────────────────────────────────────────

export interface ProcIo {
  /** Bytes passed through read()-family calls: files (cached or not), pipes, sockets, ttys. */
  rchar: number;
  wchar: number;
  /** Bytes actually fetched from / sent to storage (page-cache hits count 0). */
  readBytes: number;
  writeBytes: number;
}

export function parseIo(text: string): ProcIo | undefined {
  const v: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s*(\d+)\s*$/.exec(line);
    if (m?.[1] && m[2]) v[m[1]] = Number(m[2]);
  }
  if (v.rchar === undefined || v.wchar === undefined) return undefined;
  return { rchar: v.rchar, wchar: v.wchar, readBytes: v.read_bytes ?? 0, writeBytes: v.write_bytes ?? 0 };
}

// ── /proc/<pid>/fd/* ────────────────────────────────────────────────────────

export type FdKind = 'socket' | 'pipe' | 'file' | 'tty' | 'anon' | 'other';

/**
 * Classifies an fd link target. The kernel writes `socket:[inode]` and
 * `pipe:[inode]` for those; paths are chosen by the container (a file may be
 * called "socket:[1]"), but a real path always starts with "/".
 */
export function parseFdTarget(target: string): { kind: FdKind; inode?: number } {
  const m = /^(socket|pipe):\[(\d+)\]$/.exec(target);
  if (m?.[1] && m[2]) return { kind: m[1] as 'socket' | 'pipe', inode: Number(m[2]) };
  if (target.startsWith('anon_inode:')) return { kind: 'anon' };
  if (target.startsWith('/')) {
    if (/^\/dev\/(pts\/\d+|tty\w*|console)$/.test(target)) return { kind: 'tty' };
    return { kind: 'file' };
  }
  return { kind: 'other' };
}

/** "net:[4026531840]" → "4026531840": the identity of a network namespace. */
export function parseNsLink(target: string): string | undefined {
  return /^\w+:\[(\d+)\]$/.exec(target)?.[1];
}

// ── /proc/<pid>/net/{tcp,tcp6,udp,udp6} ─────────────────────────────────────

export type SocketState =
  | 'ESTABLISHED' | 'SYN_SENT' | 'SYN_RECV' | 'FIN_WAIT1' | 'FIN_WAIT2' | 'TIME_WAIT'
  | 'CLOSE' | 'CLOSE_WAIT' | 'LAST_ACK' | 'LISTEN' | 'CLOSING' | 'NEW_SYN_RECV' | 'UNKNOWN';

const TCP_STATES: Record<number, SocketState> = {
  1: 'ESTABLISHED', 2: 'SYN_SENT', 3: 'SYN_RECV', 4: 'FIN_WAIT1', 5: 'FIN_WAIT2', 6: 'TIME_WAIT',
  7: 'CLOSE', 8: 'CLOSE_WAIT', 9: 'LAST_ACK', 10: 'LISTEN', 11: 'CLOSING', 12: 'NEW_SYN_RECV',
};

export function socketStateName(code: number): SocketState {
  return TCP_STATES[code] ?? 'UNKNOWN';
}

export type NetTable = 'tcp' | 'tcp6' | 'udp' | 'udp6';

export interface NetEntry {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  state: SocketState;
  uid: number;
  inode: number;
}

/**
 * Address words are printed as 32-bit integers in the kernel's byte order:
 * "0100007F" is 127.0.0.1 on a little-endian machine. IPv6 is four such words.
 */
function hexAddress(hex: string, family: 4 | 6, littleEndian: boolean): string | undefined {
  if (hex.length !== (family === 4 ? 8 : 32) || !/^[0-9A-Fa-f]+$/.test(hex)) return undefined;
  const bytes = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    for (let b = 0; b < 4; b++) {
      const src = littleEndian ? 3 - b : b;
      bytes[w * 4 + b] = parseInt(hex.slice(w * 8 + src * 2, w * 8 + src * 2 + 2), 16);
    }
  }
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  return normalizeAddress(formatIPv6(bytes));
}

/**
 * One of the four net tables. Lines that do not parse are skipped (the file is
 * kernel-formatted, but a test or a future kernel may add columns).
 * `maxEntries` bounds the work on a container with a flood of sockets.
 */
export function parseNetTable(text: string, table: NetTable, littleEndian = true, maxEntries = 50_000): NetEntry[] {
  const family: 4 | 6 = table.endsWith('6') ? 6 : 4;
  const proto = table.startsWith('tcp') ? 'tcp' : 'udp';
  const out: NetEntry[] = [];
  const lines = text.split('\n');
  for (let i = 1; i < lines.length && out.length < maxEntries; i++) {
    const f = (lines[i] ?? '').trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = (f[1] ?? '').split(':');
    const [ra, rp] = (f[2] ?? '').split(':');
    if (!la || !lp || !ra || !rp) continue;
    const localAddress = hexAddress(la, family, littleEndian);
    const remoteAddress = hexAddress(ra, family, littleEndian);
    const inode = Number(f[9]);
    if (!localAddress || !remoteAddress || !Number.isInteger(inode)) continue;
    out.push({
      proto,
      family,
      localAddress,
      localPort: parseInt(lp, 16),
      remoteAddress,
      remotePort: parseInt(rp, 16),
      state: socketStateName(parseInt(f[3] ?? '', 16)),
      uid: Number(f[7]),
      inode,
    });
  }
  return out;
}

// ── /proc/<pid>/net/dev ─────────────────────────────────────────────────────

export interface NetDevTotals {
  rxBytes: number;
  txBytes: number;
  interfaces: number;
}

/**
 * Byte counters of a namespace's interfaces, summed over all but loopback:
 * what left (tx) and entered (rx) the container. Interface names are the
 * container's to choose, so only "lo" is special.
 */
export function parseNetDev(text: string): NetDevTotals {
  const out: NetDevTotals = { rxBytes: 0, txBytes: 0, interfaces: 0 };
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (name === 'lo' || f.length < 9 || !Number.isFinite(f[0]) || !Number.isFinite(f[8])) continue;
    out.rxBytes += f[0] as number;
    out.txBytes += f[8] as number;
    out.interfaces++;
  }
  return out;
}
