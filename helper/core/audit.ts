/**
 * Reading audit logs as their user: for `coi audit` and the helper's
 * `audit/read`. The files are where the guard wrote them (audit-location.ts):
 * the sandbox owner's ~/.coi/audit (home from /etc/passwd), else
 * /var/lib/coi/audit/<uid>, or COI_AUDIT_DIR. No guard needed: an audit log is
 * most wanted when things went wrong.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { SEVERITY_ORDER, Severity } from '../guard/monitor/detectors/types';
import { AuditRecord, auditFiles, parseAuditLine } from '../guard/monitor/audit';
import { auditLocation, auditSearchDirs } from '../guard/monitor/audit-location';
import type { ThreatRecord } from '../protocol/methods';
import { toThreatWire } from '../guard/monitor/wire';

export interface AuditReader {
  /** Who is reading (their own logs are searched). */
  uid: number;
  /** $HOME, searched too when it is not the passwd home. */
  home?: string;
  env?: NodeJS.ProcessEnv;
  /** The sandbox's owner when known (from its label): their directory is searched first. */
  ownerUid?: number;
}

export function auditDirsFor(r: AuditReader): string[] {
  const env = r.env ?? process.env;
  const dirs: string[] = [];
  if (r.ownerUid !== undefined && r.ownerUid !== r.uid) dirs.push(auditLocation(r.ownerUid, { env }).dir);
  dirs.push(...auditSearchDirs(r.uid, { env, ...(r.home ? { home: r.home } : {}) }));
  return [...new Set(dirs)];
}

/** The directory holding this container's log, and its files oldest first (none: the first candidate). */
export async function locateAudit(container: string, r: AuditReader): Promise<{ dir: string; files: string[] }> {
  const dirs = auditDirsFor(r);
  for (const dir of dirs) {
    const files = await auditFiles(dir, container);
    if (files.length) return { dir, files };
  }
  return { dir: dirs[0]!, files: [] };
}

export interface ReadOptions {
  /** Only the last N records. */
  limit?: number;
  minLevel?: Severity;
  /** Read the active file only up to here (bytes), to continue with a follow from there. */
  activeUpTo?: number;
}

export async function readAuditRecords(files: readonly string[], opts: ReadOptions = {}): Promise<{ records: AuditRecord[]; skipped: number }> {
  const records: AuditRecord[] = [];
  let skipped = 0;
  const min = opts.minLevel ? SEVERITY_ORDER[opts.minLevel] : 0;
  for (let i = 0; i < files.length; i++) {
    let text = await fsp.readFile(files[i]!).catch(() => Buffer.alloc(0));
    if (i === files.length - 1 && opts.activeUpTo !== undefined) text = text.subarray(0, opts.activeUpTo);
    const lines = text.toString('utf8').split('\n');
    // Without a cut-off, a last line without its newline may be a write in progress: not counted as damage.
    for (const line of lines) {
      if (!line.trim()) continue;
      const rec = parseAuditLine(line);
      if (!rec) {
        skipped++;
        continue;
      }
      if (SEVERITY_ORDER[rec.level] >= min) records.push(rec);
    }
  }
  return { records: opts.limit !== undefined ? records.slice(-opts.limit) : records, skipped };
}

export async function readAuditFor(container: string, r: AuditReader, opts: ReadOptions = {}): Promise<{ container: string; files: string[]; records: ThreatRecord[]; skipped: number }> {
  const { files } = await locateAudit(container, r);
  const { records, skipped } = await readAuditRecords(files, opts);
  return { container, files, records: records.map(toThreatWire), skipped };
}

export interface AuditLogSummary {
  container: string;
  dir: string;
  records: number;
  last?: string;
  worst?: Severity;
}

/** Every container with a log in the reader's directories. */
export async function listAuditLogs(r: AuditReader): Promise<AuditLogSummary[]> {
  const out: AuditLogSummary[] = [];
  for (const { dir, container } of await auditLogs(r)) {
    const { records } = await readAuditRecords(await auditFiles(dir, container));
    let worst: Severity | undefined;
    for (const rec of records) if (!worst || SEVERITY_ORDER[rec.level] > SEVERITY_ORDER[worst]) worst = rec.level;
    out.push({ container, dir, records: records.length, ...(records.length ? { last: records[records.length - 1]!.timestamp } : {}), ...(worst ? { worst } : {}) });
  }
  return out;
}

/** Each container's log once (the first directory that has it wins), in name order. */
async function auditLogs(r: AuditReader): Promise<{ dir: string; container: string }[]> {
  const out: { dir: string; container: string }[] = [];
  const seen = new Set<string>();
  for (const dir of auditDirsFor(r)) {
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      continue;
    }
    for (const n of names.sort()) {
      const m = /^([A-Za-z0-9][A-Za-z0-9-]*)\.jsonl$/.exec(n);
      if (!m || seen.has(m[1]!)) continue;
      seen.add(m[1]!);
      out.push({ dir, container: m[1]! });
    }
  }
  return out;
}

export function activePath(dir: string, container: string): string {
  return path.join(dir, `${container}.jsonl`);
}

export interface AuditEventRef {
  container: string;
  /** The active file of the container's log (where "open the audit line" looks first). */
  auditPath: string;
  record: ThreatRecord;
}

/**
 * The newest `limit` records across every log the reader has (of containers
 * whose name starts with `prefix`), oldest first: the history an alert view
 * shows before live events arrive.
 */
export async function recentAudit(r: AuditReader, opts: { limit: number; prefix?: string; minLevel?: Severity }): Promise<{ events: AuditEventRef[]; skipped: number }> {
  const events: AuditEventRef[] = [];
  let skipped = 0;
  for (const { dir, container } of await auditLogs(r)) {
    if (opts.prefix && !container.startsWith(opts.prefix)) continue;
    const read = await readAuditRecords(await auditFiles(dir, container), { limit: opts.limit, ...(opts.minLevel ? { minLevel: opts.minLevel } : {}) });
    skipped += read.skipped;
    for (const rec of read.records) events.push({ container, auditPath: activePath(dir, container), record: toThreatWire(rec) });
  }
  events.sort((a, b) => a.record.timestamp.localeCompare(b.record.timestamp));
  return { events: events.slice(-opts.limit), skipped };
}

/** The file and 1-based line of the record with this id, or undefined when no log of the container holds it. */
export async function locateAuditLine(container: string, id: string, r: AuditReader): Promise<{ path: string; line: number } | undefined> {
  const { files } = await locateAudit(container, r);
  // Newest file first: the event a person clicks is usually recent.
  for (const file of [...files].reverse()) {
    const text = await fsp.readFile(file, 'utf8').catch(() => '');
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      if (!l.includes(id)) continue;
      if (parseAuditLine(l)?.id === id) return { path: file, line: i + 1 };
    }
  }
  return undefined;
}
