/**
 * Resolved configurations kept by what they were resolved from, so that a
 * command whose files have not changed skips parsing, validating and merging
 * them (and building the zod schemas that takes): a good part of a short
 * `coi run`.
 *
 * resolveConfig is pure but for `realpath`: an entry is the hash of its inputs
 * (file texts, the COI_* variables, flags, trust store, this build) and
 * records every realpath answer it used, checked again before it is used. A
 * resolve sees only the variables that are in the key, so it cannot depend on
 * one that is not. A configuration with errors is never kept: its errors are
 * reported afresh each time.
 *
 * Entries live in ~/.coi/cache/config, beside the trust store and as trusted:
 * whoever can write there can write ~/.coi/config.toml too.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { COI_BUILD, COI_VERSION } from '../version';
import { ENV_KEYS } from './env';
import type { ConfigInputs, LoadedConfig } from './resolve';

const FORMAT = 1;
/** Entries kept: one per workspace and set of settings in use; the oldest go first. */
const MAX_ENTRIES = 64;

/** The variables resolveConfig may read: the configuration's own and COI_TRUST_ALL. */
const ENV_READ = [...ENV_KEYS.map((k) => k.env), 'COI_TRUST_ALL'];

interface Entry {
  format: number;
  /** [path asked, realpath answered], in the order resolve asked. */
  realpaths: Array<[string, string]>;
  loaded: LoadedConfig;
}

export function cacheDir(home: string): string {
  return join(home, '.coi', 'cache', 'config');
}

/** The inputs a resolve may see (the environment narrowed to what it reads) and their key. */
function keyed(inputs: ConfigInputs): { inputs: ConfigInputs; key: string } {
  const env: Record<string, string> = {};
  for (const k of ENV_READ) if (inputs.env[k] !== undefined) env[k] = inputs.env[k]!;
  const narrowed = { ...inputs, env };
  const { realpath: _, ...data } = narrowed;
  const key = createHash('sha256')
    .update(JSON.stringify([FORMAT, COI_VERSION, COI_BUILD ?? 'dev', process.version, data]))
    .digest('hex')
    .slice(0, 32);
  return { inputs: narrowed, key };
}

/** resolve(inputs), from the cache when an entry of the same inputs is there and its realpaths still hold. */
export function cachedResolve(inputs: ConfigInputs, resolve: (i: ConfigInputs) => LoadedConfig, dir = cacheDir(inputs.home)): LoadedConfig {
  const { inputs: seen, key } = keyed(inputs);
  const file = join(dir, `${key}.json`);
  const hit = read(file);
  if (hit && hit.realpaths.every(([p, r]) => safeRealpath(inputs, p) === r)) return hit.loaded;
  const realpaths: Array<[string, string]> = [];
  const loaded = resolve({
    ...seen,
    realpath: (p) => {
      const r = inputs.realpath(p);
      realpaths.push([p, r]);
      return r;
    },
  });
  write(dir, file, { format: FORMAT, realpaths, loaded });
  return loaded;
}

function safeRealpath(inputs: ConfigInputs, p: string): string | undefined {
  try {
    return inputs.realpath(p);
  } catch {
    return undefined;
  }
}

function read(file: string): Entry | undefined {
  try {
    const e = JSON.parse(readFileSync(file, 'utf8')) as Entry;
    return e.format === FORMAT && Array.isArray(e.realpaths) && e.loaded && typeof e.loaded === 'object' ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Best effort: a cache that cannot be written is a cache that misses. */
function write(dir: string, file: string, e: Entry): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}`;
    writeFileSync(tmp, JSON.stringify(e), { mode: 0o600 });
    renameSync(tmp, file);
    prune(dir);
  } catch {
    // nothing kept
  }
}

function prune(dir: string): void {
  const names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  if (names.length <= MAX_ENTRIES) return;
  const byAge = names.map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs })).sort((a, b) => a.t - b.t);
  for (const { n } of byAge.slice(0, names.length - MAX_ENTRIES / 2)) unlinkSync(join(dir, n));
}
