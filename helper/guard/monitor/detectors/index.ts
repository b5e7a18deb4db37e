/**
 * The detector set and the one call the monitor loop makes per poll.
 */
import type { Snapshot } from '../model';
import { blockedConnectionDetector } from './blocked-network';
import { credentialScanDetector, environTraceDetector } from './credentials';
import { suspiciousConnectionDetector } from './connections';
import { DEFAULT_THRESHOLDS, eventFactory } from './common';
import { dnsTunnelDetector } from './dns-tunnel';
import { largeIoDetector } from './large-io';
import { processStormDetector } from './process-storm';
import { reverseShellDetector } from './reverse-shell';
import type { Detector, DetectorContext, ThreatEvent } from './types';

export * from './types';
export { DEFAULT_THRESHOLDS, displaySafe } from './common';
export { blockedConnectionDetector, credentialScanDetector, environTraceDetector, suspiciousConnectionDetector, dnsTunnelDetector, largeIoDetector, processStormDetector, reverseShellDetector };

export const ALL_DETECTORS: readonly Detector[] = [
  reverseShellDetector,
  suspiciousConnectionDetector,
  credentialScanDetector,
  largeIoDetector,
  processStormDetector,
  dnsTunnelDetector,
  blockedConnectionDetector,
  environTraceDetector,
];

/**
 * The detectors that judge a process by itself (and its ancestors): what a
 * peek at a just-exec'd process can decide at once. Counts, rates and
 * comparisons need full polls.
 */
export const INSTANT_DETECTORS: readonly Detector[] = [reverseShellDetector, credentialScanDetector, environTraceDetector];

/**
 * Runs every detector on a snapshot. A detector that throws is a bug, not a
 * reason to stop watching: the others still run, and the failure becomes an
 * INFO event so it is logged and seen.
 */
export function runDetectors(current: Snapshot, previous: Snapshot | undefined, ctx: Partial<DetectorContext> = {}, detectors: readonly Detector[] = ALL_DETECTORS): ThreatEvent[] {
  const full: DetectorContext = { ...ctx, thresholds: { ...DEFAULT_THRESHOLDS, ...(ctx.thresholds ?? {}) } };
  const out: ThreatEvent[] = [];
  for (const d of detectors) {
    try {
      out.push(...d.evaluate(current, previous, full));
    } catch (e) {
      const make = eventFactory(current, full, { id: d.id, mitre: [] });
      out.push(
        make({
          level: 'info',
          category: 'monitor',
          title: 'Detector failed',
          description: `Detector ${d.id} failed on this snapshot: ${e instanceof Error ? e.message : String(e)}`.slice(0, 500),
          evidence: { rule: `${d.id}/internal-error`, key: `${d.id}:error` },
        }),
      );
    }
  }
  return out;
}
