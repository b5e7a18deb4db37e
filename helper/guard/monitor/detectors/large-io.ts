/**
 * Large reads and writes: the shape of collecting a workspace to ship it out.
 * HIGH, so the container is frozen while a person looks.
 *
 * Measured over windows, not single polls (a 250 ms poll makes any burst look
 * like a torrent): bytes within `pollIntervalSec` (the reference's "per
 * interval", 2 s) above `fileReadThresholdMb` (50 MB), or an average rate over
 * `rateWindowSec` (5 s) above `fileReadRateMbPerSec` (10 MB/s).
 *
 * - per-process: read()/write() bytes of one process (rchar/wchar: files,
 *   pipes and sockets alike);
 * - aggregate: the same over every process of the container, so splitting the
 *   job across parallel workers does not hide it;
 * - network-egress: bytes sent out of the container's interfaces (net/dev),
 *   what actually left, whoever sent it.
 *
 * Named exception `package-managers`: npm/yarn/pnpm/pip/cargo/go/apt/git and
 * their children legitimately move tens of MB in a second (npm installing
 * typescript from a local tarball writes ~75 MB in under 2 s, measured). It
 * applies to per-process and aggregate bytes, not to network egress.
 * Limitation: bytes of a process that starts and exits between two polls are
 * not seen here (the cgroup's own I/O counters would be the place).
 */
import { elapsedMs, lineage, ProcessInfo, processKey, Snapshot } from '../model';
import { baseName } from '../procfs';
import { describeLineage, describeProcess, eventFactory, exceptionEnabled, hasName, processEvidence, snapshotAtWindowStart } from './common';
import type { Detector, DetectorContext, ThreatEvent } from './types';

const ID = 'large-io';
const MITRE = ['T1005', 'T1041', 'T1030'];
const MB = 1024 * 1024;

const PACKAGE_MANAGER = /^(npm|npx|yarn|yarnpkg|pnpm|pnpx|corepack|bun|pip[0-9.]*|pipx|uv|poetry|conda|mamba|cargo|rustup|go|apt|apt-get|aptitude|dpkg|gem|bundle|bundler|composer|mvn|gradle|git|git-remote-https|git-remote-http)$/;
const PACKAGE_MANAGER_SCRIPT = /^(npm-cli\.js|npx-cli\.js|yarn\.js|yarn\.cjs|pnpm\.cjs|pnpm\.mjs|corepack\.js)$/;

const EXCEPTIONS = [
  { name: 'package-managers', description: 'Package managers and git (and their children) unpacking or cloning move large amounts of data; network egress is still checked.' },
];

function isPackageManager(p: ProcessInfo): boolean {
  if (hasName(p, PACKAGE_MANAGER)) return true;
  // node /usr/lib/node_modules/npm/bin/npm-cli.js …
  const script = p.argv[1];
  return script !== undefined && PACKAGE_MANAGER_SCRIPT.test(baseName(script));
}

function underPackageManager(s: Snapshot, p: ProcessInfo): boolean {
  return lineage(s, p.pid, 12).some(isPackageManager);
}

interface Window {
  from: Snapshot;
  ms: number;
}

function windowOf(current: Snapshot, previous: Snapshot | undefined, ctx: DetectorContext, sec: number): Window | undefined {
  const from = snapshotAtWindowStart(current, previous, ctx, sec * 1000);
  if (!from) return undefined;
  const ms = elapsedMs(from, current);
  return ms > 0 ? { from, ms } : undefined;
}

interface Bytes {
  read: number;
  write: number;
}

function processBytes(from: Snapshot, p: ProcessInfo): Bytes | undefined {
  const before = from.processes.get(p.pid);
  if (!before || before.startTime !== p.startTime || !before.io || !p.io) return undefined;
  return { read: Math.max(0, p.io.readBytes - before.io.readBytes), write: Math.max(0, p.io.writeBytes - before.io.writeBytes) };
}

/** Which limit a byte count over a window breaks, if any. */
function verdict(bytes: number, w: Window, kind: 'burst' | 'rate', ctx: DetectorContext): string | undefined {
  const t = ctx.thresholds;
  if (kind === 'burst' && bytes > t.fileReadThresholdMb * MB) return `${fmt(bytes)} in ${(w.ms / 1000).toFixed(1)} s (limit ${t.fileReadThresholdMb} MB per ${t.pollIntervalSec} s)`;
  // A rate needs most of its window behind it, or a burst reads as a rate.
  if (kind === 'rate' && w.ms >= t.rateWindowSec * 1000 * 0.8) {
    const rate = bytes / (w.ms / 1000);
    if (rate > t.fileReadRateMbPerSec * MB) return `${fmt(rate)}/s over ${(w.ms / 1000).toFixed(1)} s (limit ${t.fileReadRateMbPerSec} MB/s)`;
  }
  return undefined;
}

function fmt(bytes: number): string {
  return bytes >= MB ? `${(bytes / MB).toFixed(1)} MB` : `${(bytes / 1024).toFixed(0)} KB`;
}

export const largeIoDetector: Detector = {
  id: ID,
  title: 'Large reads or writes',
  severity: 'high',
  mitre: MITRE,
  exceptions: EXCEPTIONS,
  evaluate(current, previous, ctx): ThreatEvent[] {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const windows: Array<[Window, 'burst' | 'rate']> = [];
    const burst = windowOf(current, previous, ctx, ctx.thresholds.pollIntervalSec);
    const rate = windowOf(current, previous, ctx, ctx.thresholds.rateWindowSec);
    if (burst) windows.push([burst, 'burst']);
    if (rate) windows.push([rate, 'rate']);
    if (!windows.length) return [];

    const skipPm = exceptionEnabled(ctx, 'package-managers');
    const excused = new Map<number, boolean>();
    const isExcused = (p: ProcessInfo) => {
      let v = excused.get(p.pid);
      if (v === undefined) excused.set(p.pid, (v = skipPm && underPackageManager(current, p)));
      return v;
    };

    const events: ThreatEvent[] = [];
    const reported = new Set<string>();
    for (const [w, kind] of windows) {
      const total: Bytes = { read: 0, write: 0 };
      for (const p of current.processes.values()) {
        const b = processBytes(w.from, p);
        if (!b || isExcused(p)) continue;
        total.read += b.read;
        total.write += b.write;
        for (const dir of ['read', 'write'] as const) {
          const why = verdict(b[dir], w, kind, ctx);
          const key = `${processKey(p)}:${dir}`;
          if (!why || reported.has(key)) continue;
          reported.add(key);
          events.push(
            make({
              level: 'high',
              category: 'large_io',
              title: dir === 'read' ? 'Large read' : 'Large write',
              description: `${describeProcess(p)} — ${dir === 'read' ? 'read' : 'wrote'} ${why}. Chain: ${describeLineage(current, p.pid)}.`,
              evidence: {
                process: processEvidence(current, p),
                filesystem: {
                  [dir === 'read' ? 'readBytes' : 'writeBytes']: b[dir],
                  windowMs: Math.round(w.ms),
                  [dir === 'read' ? 'readBytesPerSec' : 'writeBytesPerSec']: Math.round(b[dir] / (w.ms / 1000)),
                },
                rule: `${ID}/process-${dir}`,
                key,
              },
            }),
          );
        }
      }
      for (const dir of ['read', 'write'] as const) {
        const why = verdict(total[dir], w, kind, ctx);
        const key = `container:${dir}`;
        // Only when no single process explains it: then the work was split.
        if (!why || reported.has(key) || events.some((e) => e.evidence.rule === `${ID}/process-${dir}`)) continue;
        reported.add(key);
        events.push(
          make({
            level: 'high',
            category: 'large_io',
            title: dir === 'read' ? 'Large read across processes' : 'Large write across processes',
            description: `The container's processes together ${dir === 'read' ? 'read' : 'wrote'} ${why}.`,
            evidence: {
              filesystem: { [dir === 'read' ? 'readBytes' : 'writeBytes']: total[dir], windowMs: Math.round(w.ms) },
              rule: `${ID}/aggregate-${dir}`,
              key,
            },
          }),
        );
      }
      if (current.netdev && w.from.netdev) {
        const sent = Math.max(0, current.netdev.txBytes - w.from.netdev.txBytes);
        const why = verdict(sent, w, kind, ctx);
        if (why && !reported.has('egress')) {
          reported.add('egress');
          events.push(
            make({
              level: 'high',
              category: 'large_io',
              title: 'Large network egress',
              description: `The container sent ${why} out of its network interfaces.`,
              evidence: { filesystem: { writeBytes: sent, windowMs: Math.round(w.ms) }, rule: `${ID}/network-egress`, key: 'egress' },
            }),
          );
        }
      }
    }
    return events;
  },
};
