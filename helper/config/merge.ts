/**
 * Merging configuration layers while remembering who set what.
 *
 * Rules (reference §2.2 and §2.5):
 * - scalars: the higher layer wins when it sets the key (absent = not set;
 *   `false` is a value, so it overrides `true`);
 * - tables merge key by key, at any depth;
 * - `defaults.environment` / `defaults.env_commands`: key-wise, and `""`
 *   removes a key a lower layer set;
 * - arrays replace, except between configuration layers (not between a
 *   profile and its parent): `defaults.forward_env` is a de-duplicated union,
 *   `mounts` and `security.additional_protected_paths` are appended.
 */
import type { Source } from './provenance';
import { formatPath, KeyPath } from './toml';

/** Between configuration layers, or between a profile and the one it inherits. */
export type MergeMode = 'layer' | 'inherit';

export const APPEND_ARRAYS: ReadonlySet<string> = new Set(['mounts', 'security.additional_protected_paths']);
export const UNION_ARRAYS: ReadonlySet<string> = new Set(['defaults.forward_env']);
export const DELETING_MAPS: ReadonlySet<string> = new Set(['defaults.environment', 'defaults.env_commands']);

export interface Provenance extends Source {
  /** For appended arrays: the lower layers whose items are in it too. */
  also?: Source[];
}
export type ProvenanceMap = Record<string, Provenance>;

/** A configuration under construction: plain data plus, per leaf key, who set it. */
export interface Merged {
  value: Record<string, unknown>;
  provenance: ProvenanceMap;
}

export function emptyMerged(): Merged {
  return { value: {}, provenance: {} };
}

export function cloneMerged(m: Merged): Merged {
  return { value: structuredClone(m.value), provenance: structuredClone(m.provenance) };
}

function isTable(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function dropUnder(prov: ProvenanceMap, key: string): void {
  for (const k of Object.keys(prov)) if (k === key || k.startsWith(`${key}.`) || k.startsWith(`${key}[`)) delete prov[k];
}

/**
 * Merges `patch` into `target` in place. `sourceAt` names the layer (and file
 * position) of each key of the patch, for provenance.
 */
export function mergeInto(target: Merged, patch: Record<string, unknown>, sourceAt: (path: KeyPath) => Source, mode: MergeMode): void {
  walk(target.value, patch, [], target.provenance, sourceAt, mode);
}

function walk(into: Record<string, unknown>, patch: Record<string, unknown>, path: string[], prov: ProvenanceMap, sourceAt: (path: KeyPath) => Source, mode: MergeMode): void {
  const here = formatPath(path);
  const deleting = DELETING_MAPS.has(here);
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) continue;
    const p = [...path, k];
    const key = formatPath(p);
    if (deleting && v === '') {
      // Between layers "" removes the key; within a profile chain it stays as a
      // marker so that the resolved profile still removes it from the config.
      if (mode === 'layer') {
        delete into[k];
        dropUnder(prov, key);
      } else {
        into[k] = '';
        prov[key] = sourceAt(p);
      }
      continue;
    }
    if (isTable(v)) {
      if (!isTable(into[k])) {
        into[k] = {};
        dropUnder(prov, key);
      }
      walk(into[k] as Record<string, unknown>, v, p, prov, sourceAt, mode);
      continue;
    }
    if (Array.isArray(v) && mode === 'layer' && (APPEND_ARRAYS.has(key) || UNION_ARRAYS.has(key))) {
      const before = Array.isArray(into[k]) ? (into[k] as unknown[]) : [];
      const added = structuredClone(v);
      let next = [...before, ...added];
      if (UNION_ARRAYS.has(key)) next = [...new Map(next.map((x) => [JSON.stringify(x), x])).values()];
      into[k] = next;
      const prev = prov[key];
      const src: Provenance = { ...sourceAt(p) };
      if (prev && before.length > 0) {
        const { also, ...prevSource } = prev;
        src.also = [...(also ?? []), prevSource];
      }
      if (added.length > 0 || !prev) prov[key] = src;
      continue;
    }
    into[k] = structuredClone(v);
    dropUnder(prov, key);
    prov[key] = sourceAt(p);
  }
}

/** Removes the `""` markers a profile chain may leave in deleting maps. */
export function stripDeletionMarkers(value: Record<string, unknown>, provenance?: ProvenanceMap): void {
  for (const mapPath of DELETING_MAPS) {
    const segs = mapPath.split('.');
    let t: unknown = value;
    for (const s of segs) t = isTable(t) ? t[s] : undefined;
    if (!isTable(t)) continue;
    for (const [k, v] of Object.entries(t)) {
      if (v === '') {
        delete t[k];
        if (provenance) delete provenance[formatPath([...segs, k])];
      }
    }
  }
}

/** Every leaf key path of plain data: arrays and scalars are leaves, tables are walked. */
export function leafPaths(value: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(value)) {
    if (isTable(v)) out.push(...leafPaths(v, [...prefix, k]));
    else out.push([...prefix, k]);
  }
  return out;
}
