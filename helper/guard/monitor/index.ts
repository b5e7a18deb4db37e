/**
 * The monitor's public surface. In the guard, MonitorSupervisor (supervisor.ts)
 * runs one MonitorLoop (loop.ts) per running sandbox whose `user.coi.monitor`
 * label (policy.ts) enables it; each poll:
 *
 *   const snap = collector.collect();                              // sync, a few ms
 *   const events = runDetectors(snap, prev, { thresholds, history, packets });
 *   for (const { event, folded } of dedup.filter(events, Date.now()).report)
 *     freeze the cgroup first (HIGH, CRITICAL), then record (fsync'd) and push,
 *     then have Incus freeze, or stop + forensic copy + delete (responder.ts).
 *
 * plus peeks at new processes from the container's kernel trace (trace.ts).
 * Audit logs live in the owner's ~/.coi/audit (audit-location.ts).
 */
export { ProcessCollector, findContainerCgroup, listCgroupPids, DEFAULT_COLLECTOR_LIMITS } from './collector';
export type { CollectorOptions, CollectorLimits, CollectorStats } from './collector';
export * from './model';
export * from './detectors';
export { Deduplicator, dedupKey, DEFAULT_DEDUP_WINDOW_MS } from './dedup';
export type { DedupDecision } from './dedup';
export { AuditWriter, auditRecord, auditPath, auditFiles, defaultAuditDir, followAudit, parseAuditLine, pruneAudit, readAudit } from './audit';
export type { AuditAction, AuditRecord, AuditWriterOptions, FollowOptions } from './audit';
export { analyzeDnsQueries } from './detectors/dns-tunnel';
export { thresholdsFromConfig } from './thresholds';
export { MonitorSupervisor } from './supervisor';
export type { SupervisorOptions } from './supervisor';
export { MonitorLoop } from './loop';
export type { LoopDeps, LoopState } from './loop';
export { decodePolicy, encodePolicy, MONITOR_LABEL, policyFromConfig, policyOf } from './policy';
export type { MonitorPolicy } from './policy';
export { auditLocation, ensureAuditDir } from './audit-location';
