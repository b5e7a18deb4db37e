/**
 * The monitor's public surface, for the guard's monitor loop:
 *
 *   const collector = new ProcessCollector({ container });          // one per sandbox
 *   const audit = await AuditWriter.open({ dir, container, retentionDays });
 *   const dedup = new Deduplicator();
 *   every poll:
 *     const snap = collector.collect();                              // sync, a few ms
 *     const events = runDetectors(snap, prev, { thresholds, history, network, dnsQueries });
 *     for (const { event, folded } of dedup.filter(events, Date.now()).report) {
 *       respond first (freeze on HIGH, kill on CRITICAL), then
 *       await audit.append(auditRecord(event, container, action, folded));
 *     }
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
