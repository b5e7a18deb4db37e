/**
 * Folds repeats of the same finding. A condition that persists (a reverse
 * shell still connected) is seen again at every poll; a person needs it once,
 * then a reminder with a count, not four lines a second.
 *
 * Key: category:title:evidence key (the reference's `category:title:evidence`,
 * with the detector choosing which evidence names "the same thing": a process
 * and socket, a destination, a domain). Window: 30 s from the last event that
 * was let through; the next one through carries how many were folded since.
 */
import type { ThreatEvent } from './detectors/types';

export const DEFAULT_DEDUP_WINDOW_MS = 30_000;

export function dedupKey(e: ThreatEvent): string {
  return `${e.category}:${e.title}:${e.evidence.key}`;
}

export interface DedupDecision {
  /** True for the first occurrence in a window: report it. */
  report: boolean;
  /** Occurrences folded since the last reported one (on a report: how many it stands for besides itself). */
  folded: number;
  key: string;
}

interface Entry {
  reportedAt: number;
  folded: number;
}

export class Deduplicator {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly windowMs = DEFAULT_DEDUP_WINDOW_MS,
    /** Bound on remembered keys; a flood of distinct keys evicts the oldest. */
    private readonly maxKeys = 10_000,
  ) {}

  check(e: ThreatEvent, now: number): DedupDecision {
    const key = dedupKey(e);
    const entry = this.entries.get(key);
    if (entry && now - entry.reportedAt < this.windowMs && now >= entry.reportedAt) {
      entry.folded++;
      return { report: false, folded: entry.folded, key };
    }
    const folded = entry?.folded ?? 0;
    // Re-insert so Map order is report order: the first keys are the oldest.
    this.entries.delete(key);
    this.entries.set(key, { reportedAt: now, folded: 0 });
    if (this.entries.size > this.maxKeys) this.sweep(now);
    while (this.entries.size > this.maxKeys) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return { report: true, folded, key };
  }

  /** Splits a batch into what to report (with folded counts) and what was folded. */
  filter(events: readonly ThreatEvent[], now: number): { report: Array<{ event: ThreatEvent; folded: number }>; folded: ThreatEvent[] } {
    const report: Array<{ event: ThreatEvent; folded: number }> = [];
    const folded: ThreatEvent[] = [];
    for (const e of events) {
      const d = this.check(e, now);
      if (d.report) report.push({ event: e, folded: d.folded });
      else folded.push(e);
    }
    return { report, folded };
  }

  /** Drops keys whose window has passed (their folded counts are lost with them). */
  sweep(now: number): void {
    for (const [k, e] of this.entries) if (now - e.reportedAt >= this.windowMs) this.entries.delete(k);
  }

  get size(): number {
    return this.entries.size;
  }
}
