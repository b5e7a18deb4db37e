/**
 * The cgroup freezer of a container, written directly: the fastest way to stop
 * every process of a container at once (~5 ms here, against ~1 s for an Incus
 * freeze). Incus does not notice a freeze it did not make (it keeps reporting
 * Running and refuses to unfreeze), so whoever freezes here must then ask Incus
 * to freeze too — Incus accepts freezing an already frozen cgroup — and
 * whoever resumes must handle a cgroup frozen behind Incus's back
 * (`frozenBehindIncus`).
 *
 *   cgroup v1 (and hybrid): <root>/freezer/lxc.payload.<name>/freezer.state ← FROZEN | THAWED
 *   cgroup v2:              <root>/lxc.payload.<name>/cgroup.freeze        ← 1 | 0
 *
 * The v1 freezer is hierarchical: the container's nested groups freeze with it.
 * Reading the state needs no privilege; writing needs root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../errors';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

const NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

export interface FreezerFile {
  version: 1 | 2;
  /** The file written to freeze or thaw. */
  file: string;
}

/** The container's freezer control file, or undefined when it has none (not running). */
export function freezerFile(container: string, cgroupRoot = DEFAULT_CGROUP_ROOT): FreezerFile | undefined {
  if (!NAME.test(container)) throw new CoiError(ErrorCodes.INVALID_INPUT, `not a container name: ${JSON.stringify(container.slice(0, 80))}`);
  const leaf = `lxc.payload.${container}`;
  const v1 = path.join(cgroupRoot, 'freezer', leaf, 'freezer.state');
  if (fs.existsSync(v1)) return { version: 1, file: v1 };
  const v2 = path.join(cgroupRoot, leaf, 'cgroup.freeze');
  if (fs.existsSync(v2)) return { version: 2, file: v2 };
  return undefined;
}

export type FreezerState = 'frozen' | 'freezing' | 'thawed';

/** What the kernel says now; undefined when the container has no cgroup. */
export function readFreezer(container: string, cgroupRoot = DEFAULT_CGROUP_ROOT): FreezerState | undefined {
  const f = freezerFile(container, cgroupRoot);
  if (!f) return undefined;
  try {
    if (f.version === 1) {
      const s = fs.readFileSync(f.file, 'utf8').trim();
      return s === 'FROZEN' ? 'frozen' : s === 'FREEZING' ? 'freezing' : 'thawed';
    }
    // v2: cgroup.freeze is what was asked; cgroup.events "frozen 1" is what happened.
    const asked = fs.readFileSync(f.file, 'utf8').trim() === '1';
    const events = fs.readFileSync(path.join(path.dirname(f.file), 'cgroup.events'), 'utf8');
    const done = /^frozen 1$/m.test(events);
    return done ? 'frozen' : asked ? 'freezing' : 'thawed';
  } catch {
    return undefined;
  }
}

export interface FreezeResult {
  ok: boolean;
  file?: string;
  error?: string;
  /** Time the write took (the freeze itself completes asynchronously in v1). */
  ms: number;
}

/**
 * Freezes (or thaws) every process of the container now. Synchronous on
 * purpose: it is the first thing a response does and must not wait behind
 * anything else on the event loop.
 */
export function writeFreezer(container: string, frozen: boolean, cgroupRoot = DEFAULT_CGROUP_ROOT): FreezeResult {
  const t0 = performance.now();
  let f: FreezerFile | undefined;
  try {
    f = freezerFile(container, cgroupRoot);
  } catch (e) {
    return { ok: false, error: (e as Error).message, ms: performance.now() - t0 };
  }
  if (!f) return { ok: false, error: `${container} has no freezer cgroup (not running?)`, ms: performance.now() - t0 };
  try {
    fs.writeFileSync(f.file, f.version === 1 ? (frozen ? 'FROZEN' : 'THAWED') : frozen ? '1' : '0');
    return { ok: true, file: f.file, ms: performance.now() - t0 };
  } catch (e) {
    return { ok: false, file: f.file, error: (e as NodeJS.ErrnoException).code ?? (e as Error).message, ms: performance.now() - t0 };
  }
}

/**
 * True when Incus reports a running instance whose cgroup is frozen: the guard
 * froze it and could not (yet) tell Incus. `coi resume` then has Incus freeze
 * (so its state agrees) and unfreeze.
 */
export function frozenBehindIncus(incusStatus: string, container: string, cgroupRoot = DEFAULT_CGROUP_ROOT): boolean {
  if (incusStatus !== 'Running') return false;
  const s = readFreezer(container, cgroupRoot);
  return s === 'frozen' || s === 'freezing';
}
