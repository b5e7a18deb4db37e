import { DEFAULT_THRESHOLDS } from './detectors/common';
import type { MonitorThresholds } from './detectors/types';

/**
 * Thresholds from a `[monitoring]` table as the reference spells it
 * (poll_interval_sec, file_read_threshold_mb, file_read_rate_mb_per_sec,
 * process_count_threshold, process_spawn_rate_threshold,
 * reverse_shell_one_liners, and [monitoring.nft] dns_query_threshold).
 * Unknown keys are ignored; wrong types and out-of-range numbers keep the
 * default (the config layer is where they should be reported).
 */
export function thresholdsFromConfig(monitoring: Record<string, unknown> = {}): MonitorThresholds {
  const num = (key: string, def: number, min: number, max: number): number => {
    const v = monitoring[key];
    return typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? v : def;
  };
  const nft = monitoring.nft;
  const dns = typeof nft === 'object' && nft !== null ? (nft as Record<string, unknown>).dns_query_threshold : undefined;
  const mode = monitoring.reverse_shell_one_liners;
  return {
    pollIntervalSec: num('poll_interval_sec', DEFAULT_THRESHOLDS.pollIntervalSec, 0.1, 3600),
    fileReadThresholdMb: num('file_read_threshold_mb', DEFAULT_THRESHOLDS.fileReadThresholdMb, 1, 1e6),
    fileReadRateMbPerSec: num('file_read_rate_mb_per_sec', DEFAULT_THRESHOLDS.fileReadRateMbPerSec, 0.1, 1e6),
    rateWindowSec: DEFAULT_THRESHOLDS.rateWindowSec,
    processCountThreshold: num('process_count_threshold', DEFAULT_THRESHOLDS.processCountThreshold, 1, 1e7),
    processSpawnRateThreshold: num('process_spawn_rate_threshold', DEFAULT_THRESHOLDS.processSpawnRateThreshold, 1, 1e7),
    reverseShellOneLiners: mode === 'critical' || mode === 'warn' || mode === 'off' ? mode : DEFAULT_THRESHOLDS.reverseShellOneLiners,
    dnsQueryThreshold: typeof dns === 'number' && Number.isFinite(dns) && dns > 0 ? dns : DEFAULT_THRESHOLDS.dnsQueryThreshold,
  };
}
