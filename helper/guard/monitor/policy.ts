/**
 * A sandbox's monitoring policy, decided once at creation from its
 * configuration and recorded on the instance as `user.coi.monitor` (compact
 * JSON, with the `[monitoring]` key names of the config file), so the guard —
 * which reads no workspace config — rediscovers it from Incus after any
 * restart. Pure: the sandbox spec writes it, the guard reads it.
 *
 *   user.coi.monitor = {"v":1,"enabled":true,"auto_pause_on_high":true,…,"process_count_threshold":100,…}
 *
 * Instance config is writable only by Incus admins (root-equivalent), never
 * from inside the container (security.guestapi is off).
 */
import { z } from 'zod';
import { once } from '../../lazy';
import type { Config } from '../../config';
import { thresholdsFromConfig } from './thresholds';
import type { MonitorThresholds } from './detectors/types';

export const MONITOR_LABEL = 'user.coi.monitor';

export interface MonitorPolicy {
  enabled: boolean;
  pauseOnHigh: boolean;
  killOnCritical: boolean;
  forensicsOnKill: boolean;
  retentionDays: number;
  thresholds: MonitorThresholds;
}

type Monitoring = Config['monitoring'];

export function policyFromConfig(m: Monitoring): MonitorPolicy {
  return {
    enabled: m.enabled,
    pauseOnHigh: m.auto_pause_on_high,
    killOnCritical: m.auto_kill_on_critical,
    forensicsOnKill: m.forensics_on_kill,
    retentionDays: m.audit_log_retention_days,
    thresholds: thresholdsFromConfig(m as unknown as Record<string, unknown>),
  };
}

/** The label's value: the policy under the config file's own key names. */
export function encodePolicy(p: MonitorPolicy): string {
  const t = p.thresholds;
  return JSON.stringify({
    v: 1,
    enabled: p.enabled,
    auto_pause_on_high: p.pauseOnHigh,
    auto_kill_on_critical: p.killOnCritical,
    forensics_on_kill: p.forensicsOnKill,
    audit_log_retention_days: p.retentionDays,
    poll_interval_sec: t.pollIntervalSec,
    file_read_threshold_mb: t.fileReadThresholdMb,
    file_read_rate_mb_per_sec: t.fileReadRateMbPerSec,
    process_count_threshold: t.processCountThreshold,
    process_spawn_rate_threshold: t.processSpawnRateThreshold,
    reverse_shell_one_liners: t.reverseShellOneLiners,
    dns_query_threshold: t.dnsQueryThreshold,
  });
}

const labelSchema = once(() =>
  z
    .object({
      v: z.literal(1),
      enabled: z.boolean(),
      auto_pause_on_high: z.boolean().default(true),
      auto_kill_on_critical: z.boolean().default(true),
      forensics_on_kill: z.boolean().default(false),
      audit_log_retention_days: z.number().int().min(1).max(36500).default(30),
    })
    .passthrough(),
);

export type PolicyDecode =
  | { kind: 'absent' }
  | { kind: 'ok'; policy: MonitorPolicy }
  /** Present but unreadable: watched with the defaults (fail closed), and said so. */
  | { kind: 'invalid'; policy: MonitorPolicy; error: string };

export function defaultPolicy(): MonitorPolicy {
  return { enabled: true, pauseOnHigh: true, killOnCritical: true, forensicsOnKill: false, retentionDays: 30, thresholds: thresholdsFromConfig({}) };
}

/**
 * Reads the label. Someone asked for monitoring when it is there, so a value
 * that does not parse means "monitor with the defaults", never "do not monitor".
 */
export function decodePolicy(value: string | undefined): PolicyDecode {
  if (value === undefined || value === '') return { kind: 'absent' };
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (e) {
    return { kind: 'invalid', policy: defaultPolicy(), error: `not JSON: ${(e as Error).message}` };
  }
  const r = labelSchema().safeParse(raw);
  if (!r.success) return { kind: 'invalid', policy: defaultPolicy(), error: r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
  const d = r.data;
  const nft = typeof d.dns_query_threshold === 'number' ? { nft: { dns_query_threshold: d.dns_query_threshold } } : {};
  return {
    kind: 'ok',
    policy: {
      enabled: d.enabled,
      pauseOnHigh: d.auto_pause_on_high,
      killOnCritical: d.auto_kill_on_critical,
      forensicsOnKill: d.forensics_on_kill,
      retentionDays: d.audit_log_retention_days,
      thresholds: thresholdsFromConfig({ ...d, ...nft }),
    },
  };
}

/** The policy a label asks for, or undefined when there is none. */
export function policyOf(value: string | undefined): MonitorPolicy | undefined {
  const d = decodePolicy(value);
  return d.kind === 'absent' ? undefined : d.policy;
}
