/**
 * Fork bombs and spawn storms: CRITICAL, since a container at its pid limit
 * takes the guard's own responses down with it if left to run.
 *
 * - process-count: processes in the cgroup (all of them, counted before any
 *   collection limit) above `processCountThreshold` (100);
 * - spawn-rate: processes that appeared within `pollIntervalSec` (2 s)
 *   above `processSpawnRateThreshold` (50). Counted over every snapshot in the
 *   window, so a process that lived through just one poll still counts; one
 *   that lived between two polls is not seen (the count rule catches the growth).
 */
import { elapsedMs, processKey, Snapshot } from '../model';
import { eventFactory, snapshotAtWindowStart } from './common';
import type { Detector, ThreatEvent } from './types';

const ID = 'process-storm';
const MITRE = ['T1499', 'T1496'];

/** Keys of processes that appeared after `from`, across `from`…`current`. */
export function spawnedSince(from: Snapshot, between: readonly Snapshot[], current: Snapshot): number {
  const base = new Set<string>();
  for (const p of from.processes.values()) base.add(processKey(p));
  const seen = new Set<string>();
  for (const s of [...between, current]) {
    for (const p of s.processes.values()) {
      const k = processKey(p);
      if (!base.has(k)) seen.add(k);
    }
  }
  return seen.size;
}

export const processStormDetector: Detector = {
  id: ID,
  title: 'Fork bomb or spawn storm',
  severity: 'critical',
  mitre: MITRE,
  exceptions: [],
  evaluate(current, previous, ctx): ThreatEvent[] {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const t = ctx.thresholds;
    const events: ThreatEvent[] = [];
    if (current.processCount > t.processCountThreshold) {
      events.push(
        make({
          level: 'critical',
          category: 'process_storm',
          title: 'Too many processes',
          description: `The container runs ${current.processCount} processes (limit ${t.processCountThreshold}): a fork bomb or runaway spawning.`,
          evidence: { processCount: { count: current.processCount, threshold: t.processCountThreshold }, rule: `${ID}/process-count`, key: 'process-count' },
        }),
      );
    }
    const from = snapshotAtWindowStart(current, previous, ctx, t.pollIntervalSec * 1000);
    if (from) {
      const between = (ctx.history ?? []).filter((s) => s !== from && elapsedMs(from, s) > 0);
      const spawned = spawnedSince(from, between, current);
      const ms = Math.round(elapsedMs(from, current));
      if (spawned > t.processSpawnRateThreshold) {
        events.push(
          make({
            level: 'critical',
            category: 'process_storm',
            title: 'Process spawn storm',
            description: `${spawned} new processes in ${(ms / 1000).toFixed(1)} s (limit ${t.processSpawnRateThreshold} per ${t.pollIntervalSec} s).`,
            evidence: {
              processCount: { count: current.processCount, threshold: t.processCountThreshold, spawned, spawnThreshold: t.processSpawnRateThreshold, windowMs: ms },
              rule: `${ID}/spawn-rate`,
              key: 'spawn-rate',
            },
          }),
        );
      }
    }
    return events;
  },
};
