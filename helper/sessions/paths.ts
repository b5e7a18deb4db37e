/**
 * Which home paths a session saves. Pure, and free of I/O so the config schema
 * can check `[tool.custom] state_dirs` with the same rule the guard applies.
 */
import * as path from 'node:path';

/**
 * A state path from configuration or an instance label: relative to the home,
 * normalised, never climbing out of it (the guard writes the copy as root
 * under the owner's home), or undefined.
 */
export function safeStatePath(p: unknown): string | undefined {
  if (typeof p !== 'string' || p.includes('\0')) return undefined;
  const n = path.posix.normalize(p.trim().replace(/^~\//, '')).replace(/\/+$/, '');
  if (n === '' || n === '.' || n === '..' || n.startsWith('../') || path.posix.isAbsolute(n)) return undefined;
  return n;
}

/** What a session saves: the tool's own state paths, then the configured ones ([tool.custom] state_dirs), once each. */
export function sessionStatePaths(toolPaths: readonly string[], extra: readonly unknown[] = []): string[] {
  const out: string[] = [];
  for (const p of [...toolPaths, ...extra]) {
    const safe = safeStatePath(p);
    if (safe && !out.includes(safe)) out.push(safe);
  }
  return out;
}
