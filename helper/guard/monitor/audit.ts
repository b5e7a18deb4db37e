/**
 * The audit log: `~/.coi/audit/<container>.jsonl`, one JSON object per line,
 * append-only. Each line is written with O_APPEND and fdatasync'd before
 * `append` resolves, so an event the guard acted on is on disk even if the
 * guard is killed the next instant. A crash mid-write can leave a torn last
 * line: the reader skips it, and the writer starts a fresh line after it.
 *
 * Rotation by day (UTC): when the first append of a new day finds yesterday's
 * file, it is renamed `<container>.<YYYY-MM-DD>.jsonl` and a new one started;
 * rotated files older than `audit_log_retention_days` are deleted.
 *
 * Records hold container-controlled strings: JSON escapes them; whoever shows
 * them (terminal, webview) escapes them again for its medium.
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { CoiError, ErrorCodes } from '../../errors';
import type { Severity, ThreatEvent } from './detectors/types';

export type AuditAction =
  | 'logged'
  | 'alerted'
  | 'paused'
  | 'killed'
  | 'deduplicated'
  | 'logged (already paused)'
  | 'pause failed'
  | 'kill failed';

export interface AuditRecord {
  id: string;
  timestamp: string;
  level: Severity;
  category: string;
  title: string;
  description: string;
  evidence: Record<string, unknown>;
  action: AuditAction | string;
  container: string;
  detector?: string;
  mitre?: string[];
  /** Identical events folded into this one since the last report. */
  folded?: number;
  /** For paused/killed: when it was seen and when the freezer was written. */
  response?: { detectedAt: string; frozenAt?: string; containMs?: number; error?: string };
}

const auditRecordSchema = z
  .object({
    id: z.string(),
    timestamp: z.string(),
    level: z.enum(['info', 'warning', 'high', 'critical']),
    category: z.string(),
    title: z.string(),
    description: z.string(),
    evidence: z.record(z.string(), z.unknown()),
    action: z.string(),
    container: z.string(),
    detector: z.string().optional(),
    mitre: z.array(z.string()).optional(),
    folded: z.number().int().optional(),
    response: z.object({ detectedAt: z.string(), frozenAt: z.string().optional(), containMs: z.number().optional(), error: z.string().optional() }).passthrough().optional(),
  })
  .passthrough();

export function auditRecord(event: ThreatEvent, container: string, action: AuditAction, folded = 0): AuditRecord {
  const r: AuditRecord = {
    id: event.id,
    timestamp: event.time,
    level: event.level,
    category: event.category,
    title: event.title,
    description: event.description,
    evidence: { ...event.evidence },
    action,
    container,
    detector: event.detector,
    mitre: event.mitre,
  };
  if (folded > 0) r.folded = folded;
  return r;
}

/** `~/.coi/audit` of the given home (the guard passes the owning user's). */
export function defaultAuditDir(home = os.homedir()): string {
  return path.join(home, '.coi', 'audit');
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

function checkName(container: string): void {
  // The name becomes a file name: nothing that can climb out of the directory.
  if (!NAME.test(container)) throw new CoiError(ErrorCodes.INVALID_INPUT, `not a valid container name for an audit log: ${JSON.stringify(container.slice(0, 80))}`);
}

export function auditPath(dir: string, container: string): string {
  checkName(container);
  return path.join(dir, `${container}.jsonl`);
}

const day = (d: Date): string => d.toISOString().slice(0, 10);

export interface AuditWriterOptions {
  dir: string;
  container: string;
  /** Rotated files older than this many days are deleted (reference default 30). */
  retentionDays?: number;
  now?: () => Date;
  fileMode?: number;
  dirMode?: number;
  /** A line longer than this has its evidence cut down (a record is never dropped). */
  maxLineBytes?: number;
  /**
   * Who the files belong to: the root guard writes logs its users read, so
   * each file it creates (the first, and each one after a rotation) is
   * chowned to them. Undefined: whoever runs the writer.
   */
  owner?: { uid: number; gid: number };
}

export class AuditWriter {
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly opts: Required<Omit<AuditWriterOptions, 'now' | 'owner'>> & Pick<AuditWriterOptions, 'owner'> & { now: () => Date },
    private handle: fsp.FileHandle,
    private fileDay: string,
  ) {}

  static async open(options: AuditWriterOptions): Promise<AuditWriter> {
    const opts = {
      retentionDays: 30,
      fileMode: 0o600,
      dirMode: 0o700,
      maxLineBytes: 256 * 1024,
      now: () => new Date(),
      ...options,
    };
    const file = auditPath(opts.dir, opts.container);
    await fsp.mkdir(opts.dir, { recursive: true, mode: opts.dirMode });
    const { handle, created } = await openAppend(file, opts.fileMode, opts.owner);
    if (created) await syncDir(opts.dir);
    const fileDay = (await firstRecordDay(file)) ?? day(opts.now());
    await terminateTornLine(handle, file);
    return new AuditWriter(opts, handle, fileDay);
  }

  get path(): string {
    return auditPath(this.opts.dir, this.opts.container);
  }

  /** Appends one record; resolves once it is on disk. Appends are written in call order. */
  append(record: AuditRecord): Promise<void> {
    const run = this.queue.then(() => this.write(record));
    // Keep the chain alive after a failure; the caller still sees its own error.
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
    if (!this.closed) {
      this.closed = true;
      await this.handle.close();
    }
  }

  private async write(record: AuditRecord): Promise<void> {
    if (this.closed) throw new CoiError(ErrorCodes.INTERNAL, 'audit log is closed');
    const today = day(this.opts.now());
    if (today !== this.fileDay) await this.rotate(today);
    const line = Buffer.from(`${this.serialize(record)}\n`, 'utf8');
    let off = 0;
    while (off < line.length) {
      const { bytesWritten } = await this.handle.write(line, off, line.length - off);
      off += bytesWritten;
    }
    await this.handle.datasync();
  }

  private serialize(record: AuditRecord): string {
    const text = JSON.stringify(record);
    if (Buffer.byteLength(text) <= this.opts.maxLineBytes) return text;
    const { rule, key } = record.evidence as { rule?: unknown; key?: unknown };
    return JSON.stringify({ ...record, description: record.description.slice(0, 2000), evidence: { rule, key, truncated: true } });
  }

  private async rotate(today: string): Promise<void> {
    const file = this.path;
    const size = (await this.handle.stat()).size;
    if (size > 0) {
      await this.handle.close();
      let target = path.join(this.opts.dir, `${this.opts.container}.${this.fileDay}.jsonl`);
      for (let i = 1; await exists(target); i++) target = path.join(this.opts.dir, `${this.opts.container}.${this.fileDay}.${i}.jsonl`);
      await fsp.rename(file, target);
      this.handle = (await openAppend(file, this.opts.fileMode, this.opts.owner)).handle;
      await syncDir(this.opts.dir);
    }
    this.fileDay = today;
    await pruneAudit(this.opts.dir, this.opts.retentionDays, this.opts.now(), this.opts.container);
  }
}

const { O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = fsConstants;

/**
 * Opens for appending, never through a symlink (the directory may be a
 * user's and the writer root). A file it creates is chowned to `owner`.
 */
async function openAppend(file: string, mode: number, owner?: { uid: number; gid: number }): Promise<{ handle: fsp.FileHandle; created: boolean }> {
  let handle: fsp.FileHandle;
  let created: boolean;
  try {
    // Create exclusively, so we know to sync the directory entry.
    handle = await fsp.open(file, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    handle = await fsp.open(file, O_WRONLY | O_APPEND | O_NOFOLLOW, mode);
    created = false;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new CoiError(ErrorCodes.NOT_PERMITTED, `${file} is not a regular file; refusing to append an audit log to it`);
    // Ours to fix when we run as root: a file we made, or one left root's by an older writer.
    if (owner && process.getuid?.() === 0 && (st.uid !== owner.uid || st.gid !== owner.gid) && (created || st.uid === 0)) {
      await handle.chown(owner.uid, owner.gid);
    }
  } catch (e) {
    await handle.close();
    throw e;
  }
  return { handle, created };
}

async function syncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(
    () => true,
    () => false,
  );
}

/** A crash mid-line leaves no newline at the end: start the next record on a line of its own. */
async function terminateTornLine(handle: fsp.FileHandle, file: string): Promise<void> {
  const { size } = await handle.stat();
  if (size === 0) return;
  const last = Buffer.alloc(1);
  // The append handle is write-only: look at the last byte through another.
  const r = await fsp.open(file, 'r').catch(() => undefined);
  if (!r) return;
  try {
    await r.read(last, 0, 1, size - 1);
  } finally {
    await r.close();
  }
  if (last[0] !== 0x0a) {
    await handle.write('\n');
    await handle.datasync();
  }
}

async function firstRecordDay(file: string): Promise<string | undefined> {
  let h: fsp.FileHandle;
  try {
    h = await fsp.open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await h.read(buf, 0, buf.length, 0);
    const first = buf.subarray(0, bytesRead).toString('utf8').split('\n')[0] ?? '';
    const rec = parseAuditLine(first);
    if (rec && /^\d{4}-\d{2}-\d{2}/.test(rec.timestamp)) return rec.timestamp.slice(0, 10);
    if (bytesRead === 0) return undefined;
    return day((await h.stat()).mtime);
  } finally {
    await h.close();
  }
}

/**
 * Deletes rotated files older than `retentionDays` (for one container, or all),
 * and active files not written for that long (their container is long gone).
 */
export async function pruneAudit(dir: string, retentionDays: number, now: Date = new Date(), container?: string): Promise<string[]> {
  const cutoff = day(new Date(now.getTime() - retentionDays * 86_400_000));
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?)?\.jsonl$/.exec(name);
    if (!m || (container !== undefined && m[1] !== container)) continue;
    const p = path.join(dir, name);
    let old: boolean;
    if (m[2]) old = m[2] < cutoff;
    else old = !container && day((await fsp.stat(p).catch(() => ({ mtime: now }))).mtime) < cutoff;
    if (!old) continue;
    await fsp.unlink(p).catch(() => undefined);
    removed.push(p);
  }
  return removed;
}

export function parseAuditLine(line: string): AuditRecord | undefined {
  if (!line.trim()) return undefined;
  try {
    const r = auditRecordSchema.safeParse(JSON.parse(line));
    return r.success ? (r.data as AuditRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** The container's audit files, oldest first: rotated ones by date, then the active one. */
export async function auditFiles(dir: string, container: string): Promise<string[]> {
  checkName(container);
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const esc = container.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const rotated = names
    .map((n) => ({ n, m: new RegExp(`^${esc}\\.(\\d{4}-\\d{2}-\\d{2})(?:\\.(\\d+))?\\.jsonl$`).exec(n) }))
    .filter((x): x is { n: string; m: RegExpExecArray } => x.m !== null)
    .sort((a, b) => (a.m[1] ?? '').localeCompare(b.m[1] ?? '') || Number(a.m[2] ?? 0) - Number(b.m[2] ?? 0))
    .map((x) => path.join(dir, x.n));
  const active = names.includes(`${container}.jsonl`) ? [path.join(dir, `${container}.jsonl`)] : [];
  return [...rotated, ...active];
}

/** Every record of a container, oldest first; lines that do not parse (a torn last line) are counted, not fatal. */
export async function readAudit(dir: string, container: string): Promise<{ records: AuditRecord[]; skipped: number }> {
  const records: AuditRecord[] = [];
  let skipped = 0;
  for (const f of await auditFiles(dir, container)) {
    const text = await fsp.readFile(f, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const r = parseAuditLine(line);
      if (r) records.push(r);
      else skipped++;
    }
  }
  return { records, skipped };
}

export interface FollowOptions {
  signal?: AbortSignal;
  /** Yield the active file's existing records first (default: only new ones). */
  fromStart?: boolean;
  /** Continue a read that stopped here: the active file (by inode) from this byte on. */
  from?: { ino: number; offset: number };
  pollMs?: number;
}

/**
 * Yields records as they are appended, across rotations (the old file is read
 * to its end before the new one is opened). Ends when `signal` aborts.
 */
export async function* followAudit(dir: string, container: string, opts: FollowOptions = {}): AsyncGenerator<AuditRecord> {
  const file = auditPath(dir, container);
  const pollMs = opts.pollMs ?? 250;
  let handle: fsp.FileHandle | undefined;
  let ino = -1;
  let pos = 0;
  let partial = '';
  let first = true;
  const sleep = () =>
    new Promise<void>((resolve) => {
      if (opts.signal?.aborted) return resolve();
      const t = setTimeout(done, pollMs);
      function done() {
        clearTimeout(t);
        opts.signal?.removeEventListener('abort', done);
        resolve();
      }
      opts.signal?.addEventListener('abort', done, { once: true });
    });
  const drain = async function* (h: fsp.FileHandle): AsyncGenerator<AuditRecord> {
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await h.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const lines = (partial + buf.subarray(0, bytesRead).toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        const r = parseAuditLine(l);
        if (r) yield r;
      }
    }
  };
  try {
    while (!opts.signal?.aborted) {
      const st = await fsp.stat(file).catch(() => undefined);
      if (st && st.ino !== ino) {
        // New or rotated file: finish the old one, then start the new one at 0.
        if (handle) {
          yield* drain(handle);
          await handle.close();
          handle = undefined;
        }
        handle = await fsp.open(file, 'r').catch(() => undefined);
        if (handle) {
          ino = st.ino;
          pos = first && opts.from?.ino === st.ino ? opts.from.offset : first && !opts.fromStart && !opts.from ? st.size : 0;
          partial = '';
        }
      } else if (st && handle && st.size < pos) {
        // Truncated in place: start over.
        pos = 0;
        partial = '';
      }
      first = false;
      if (handle) yield* drain(handle);
      await sleep();
    }
  } finally {
    await handle?.close();
  }
}
