/**
 * What several detectors share: recognising shells and interpreters by what
 * they are (comm, executable, argv[0] — any of them, so a renamed copy must
 * hide all three), building evidence with lineage, and making container-
 * controlled text safe to show.
 */
import { randomUUID } from 'node:crypto';
import { capArgv, elapsedMs, lineageEvidence, ProcessInfo, Snapshot, SocketInfo } from '../model';
import { formatEndpoint } from '../ip';
import { baseName } from '../procfs';
import type { DetectorContext, MonitorThresholds, NetworkEvidence, ProcessEvidence, ThreatEvent } from './types';

export const DEFAULT_THRESHOLDS: MonitorThresholds = {
  pollIntervalSec: 2,
  fileReadThresholdMb: 50,
  fileReadRateMbPerSec: 10,
  rateWindowSec: 5,
  processCountThreshold: 100,
  processSpawnRateThreshold: 50,
  reverseShellOneLiners: 'critical',
  dnsQueryThreshold: 100,
};

const SHELLS = new Set(['sh', 'bash', 'rbash', 'dash', 'zsh', 'ksh', 'ksh93', 'mksh', 'pdksh', 'oksh', 'ash', 'busybox', 'fish', 'csh', 'tcsh', 'yash', 'elvish', 'nu', 'xonsh', 'pwsh', 'powershell', 'rc', 'es']);
const INTERPRETER = /^(python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|irb|php[0-9.]*|php-cgi|php-fpm[0-9.]*|node|nodejs|deno|bun|lua[0-9.]*|luajit|tclsh[0-9.]*|wish|expect|awk|gawk|mawk|nawk|busybox|guile|racket|Rscript|R|julia|jshell|groovy|scala|osascript|socat|nc|ncat|netcat|nc\.traditional|nc\.openbsd)$/;

/**
 * The names a process goes by: comm, the executable's file name, argv[0]'s
 * file name (minus a login shell's "-"). A process that set its title
 * (node's process.title, setproctitle: npm shows as "npm install ./x") also
 * goes by the first word of it. All are chosen by the process except exe.
 */
function names(p: ProcessInfo): string[] {
  const out = [p.comm];
  const commWord = p.comm.split(' ')[0];
  if (commWord && commWord !== p.comm) out.push(commWord);
  if (p.exe) out.push(baseName(p.exe));
  const a0 = p.argv[0];
  if (a0) {
    out.push(baseName(a0).replace(/^-/, ''));
    const word = a0.split(' ')[0];
    if (word && word !== a0) out.push(baseName(word).replace(/^-/, ''));
  }
  return out;
}

/** A command shell by any of its names. */
export function isShell(p: ProcessInfo): boolean {
  return names(p).some((n) => SHELLS.has(n));
}

/**
 * A shell, a scripting interpreter, or a relay that can run one (socat,
 * netcat): anything that turns bytes from a socket into commands.
 */
export function isShellOrInterpreter(p: ProcessInfo): boolean {
  return names(p).some((n) => SHELLS.has(n) || INTERPRETER.test(n));
}

export function hasName(p: ProcessInfo, re: RegExp): boolean {
  return names(p).some((n) => re.test(n));
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * Container-controlled text for a human-readable description: control
 * characters (ANSI escapes, bidi overrides, newlines) shown as \xNN / \uNNNN
 * so a terminal printing an audit line cannot be driven by it, and capped.
 * HTML is not escaped here: that is the renderer's job (the webview's).
 * Evidence keeps the exact bytes; JSON escapes them on the way to disk.
 */
export function displaySafe(text: string, max = 200): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  return cut.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** How a person names a process in one line: `sh (pid 123): sh -i`. */
export function describeProcess(p: ProcessInfo): string {
  const cmd = p.argv.length ? p.argv.join(' ') : `[${p.comm}]`;
  return `${displaySafe(p.comm, 32)} (pid ${p.pid}${p.nsPid !== undefined && p.nsPid !== p.pid ? `, ${p.nsPid} in the container` : ''}): ${displaySafe(cmd, 160)}`;
}

/** `sh -i ← bash -c … ← sshd`: the chain up to init, for descriptions. */
export function describeLineage(snapshot: Snapshot, pid: number): string {
  return lineageEvidence(snapshot, pid)
    .map((e) => `${displaySafe(e.comm, 32)}[${e.pid}]`)
    .join(' ← ');
}

export function processEvidence(snapshot: Snapshot, p: ProcessInfo): ProcessEvidence {
  const ev: ProcessEvidence = { pid: p.pid, comm: p.comm, argv: capArgv(p.argv), lineage: lineageEvidence(snapshot, p.pid) };
  if (p.nsPid !== undefined) ev.nsPid = p.nsPid;
  if (p.exe !== undefined) ev.exe = p.exe;
  if (p.uid >= 0) ev.uid = p.uid;
  return ev;
}

export function networkEvidence(s: SocketInfo, fds?: number[]): NetworkEvidence {
  const ev: NetworkEvidence = {
    proto: s.proto,
    remote: s.remote.address,
    port: s.remote.port,
    local: formatEndpoint(s.local.address, s.local.port),
    state: s.state,
  };
  if (fds?.length) ev.fds = fds;
  return ev;
}

export function eventFactory(current: Snapshot, ctx: DetectorContext, detector: { id: string; mitre: string[] }) {
  const time = new Date(current.takenAt).toISOString();
  const newId = ctx.newId ?? randomUUID;
  return (e: Omit<ThreatEvent, 'id' | 'time' | 'detector' | 'mitre'> & { mitre?: string[] }): ThreatEvent => ({
    id: newId(),
    time,
    detector: detector.id,
    ...e,
    mitre: e.mitre ?? detector.mitre,
  });
}

export function exceptionEnabled(ctx: DetectorContext, name: string): boolean {
  return !(ctx.disabledExceptions ?? []).includes(name);
}

/** The oldest snapshot in history at most `windowMs` before `current`; else `previous`. */
export function snapshotAtWindowStart(current: Snapshot, previous: Snapshot | undefined, ctx: DetectorContext, windowMs: number): Snapshot | undefined {
  for (const s of ctx.history ?? []) if (elapsedMs(s, current) <= windowMs) return s;
  return previous;
}
