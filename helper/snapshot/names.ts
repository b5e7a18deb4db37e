/**
 * Snapshot names, pure: the default `snap-YYYYMMDD-HHMMSS` of the Go coi, the
 * `auto-…` names of automatic checkpoints (the only ones ever pruned), and
 * which automatic checkpoints a prune removes.
 */
import { CoiError, ErrorCodes } from '../errors';

export const AUTO_PREFIX = 'auto-';
export const USER_PREFIX = 'snap-';

/** YYYYMMDD-HHMMSS in the host's local time, like the Go coi. */
export function stamp(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
}

export function defaultSnapshotName(now: Date): string {
  return `${USER_PREFIX}${stamp(now)}`;
}

export function autoSnapshotName(now: Date): string {
  return `${AUTO_PREFIX}${stamp(now)}`;
}

export function isAuto(name: string): boolean {
  return name.startsWith(AUTO_PREFIX);
}

/** A name Incus accepts and a person can type; `auto-` is reserved for checkpoints coi prunes. */
export function validateSnapshotName(name: string, opts: { allowAuto?: boolean } = {}): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `"${name}" is not a snapshot name: use letters, digits, ".", "_" and "-" (at most 63, starting with a letter or digit)`);
  }
  if (!opts.allowAuto && isAuto(name)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `snapshot names starting with "${AUTO_PREFIX}" are reserved for automatic checkpoints, which are pruned; choose another name`);
  }
  return name;
}

/** `base`, or `base-2`, `base-3`… when two snapshots are taken within one second. */
export function uniqueName(base: string, taken: ReadonlySet<string>): string {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

/** The automatic checkpoints beyond the newest `keep`, oldest first. User snapshots are never pruned. */
export function autoToPrune(snapshots: readonly { name: string; createdAt: string }[], keep: number): string[] {
  const autos = snapshots.filter((s) => isAuto(s.name)).sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.name.localeCompare(a.name));
  return autos.slice(Math.max(0, keep)).map((s) => s.name).reverse();
}
