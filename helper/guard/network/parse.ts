/**
 * Reads `nft -j list ruleset` (or the listing of our tables) back into "which
 * sandboxes have rules", so the reconciler and `coi clean --orphans` can find
 * rules of sandboxes that no longer exist, and health can show accounting.
 *
 * Identity comes from object names (`in_<key>`, `sb_<key>`, …) and from the
 * comment of each ingress chain's first rule, because nft 1.0.x's JSON leaves
 * out a netdev chain's device and every chain comment. Other tables (Incus's,
 * firewalld's) are skipped without being interpreted.
 */
import { CoiError, ErrorCodes } from '../../errors';
import {
  COMMENT_BOOT,
  COMMENT_SANDBOX,
  DEFAULT_TABLES,
  FILTER_FAMILY,
  INGRESS_FAMILY,
  NAME,
  sandboxKey,
  SET_SUFFIX,
  SHARED_CHAINS,
  TableNames,
} from './names';
import { NETWORK_MODES, NetworkMode } from './types';

export interface InstalledSandbox {
  /** The key from object names; equals the container name for every name Incus accepts. */
  key: string;
  /** From the ingress or boot rule's comment. */
  hostIface?: string;
  mode?: NetworkMode;
  /** Its rules are firewalld's: the guard's chain only counts. */
  backend?: 'firewalld';
  /** A boot block (everything dropped) is installed. */
  bootBlocked: boolean;
  /** Its ingress chain (identity, accounting, stateless drops) is installed. */
  ingress: boolean;
  /** Its chain in the inet filter table is installed (never for `open`). */
  filter: boolean;
  /** Frames and bytes the sandbox sent since its rules were last applied. */
  packets?: number;
  bytes?: number;
  /** Each object of ours that belongs to it, as "<family> <table> <kind> <name>". */
  objects: string[];
}

export interface InstalledRules {
  /** Which of our tables exist, as "<family> <name>". */
  tables: string[];
  /** Sorted by key. */
  sandboxes: InstalledSandbox[];
  /** Objects in our tables that fit no naming scheme of this version (e.g. an older guard's). */
  unknown: string[];
}

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Json, k: string): string | undefined {
  const v = o[k];
  return typeof v === 'string' ? v : undefined;
}

const KEY = '([A-Za-z0-9_-]+)';
const RE = {
  ingress: new RegExp(`^${NAME.ingress}${KEY}$`),
  boot: new RegExp(`^${NAME.boot}${KEY}$`),
  sandbox: new RegExp(`^${NAME.sandbox}${KEY}$`),
  limit: new RegExp(`^(?:${NAME.logLimit}|${NAME.dnsRateLimit})${KEY}$`),
  set: new RegExp(`^${NAME.allowSet}${KEY}(?:${SET_SUFFIX.net}|${SET_SUFFIX.dns})$`),
  comment: /^(coi:[a-z]+) (.*)$/,
};

/** "key=a iface=b mode=c" → {key: a, iface: b, mode: c}. */
function fields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(' ')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

function counterOf(rule: Json): { packets: number; bytes: number } | undefined {
  const expr = rule.expr;
  if (!Array.isArray(expr)) return undefined;
  for (const e of expr) {
    if (isRecord(e) && isRecord(e.counter)) {
      const { packets, bytes } = e.counter;
      if (typeof packets === 'number' && typeof bytes === 'number') return { packets, bytes };
    }
  }
  return undefined;
}

/** Parses nft's JSON (the text or the parsed value). Throws INTERNAL if it is not nft's JSON at all. */
export function parseInstalledRules(input: unknown, tableNames: TableNames = DEFAULT_TABLES): InstalledRules {
  const OUR_TABLES = new Set([`${FILTER_FAMILY} ${tableNames.filter}`, `${INGRESS_FAMILY} ${tableNames.ingress}`]);
  let doc: unknown = input;
  if (typeof input === 'string') {
    try {
      doc = JSON.parse(input);
    } catch (e) {
      throw new CoiError(ErrorCodes.INTERNAL, `nft did not print JSON: ${(e as Error).message}`, { cause: e });
    }
  }
  if (!isRecord(doc) || !Array.isArray(doc.nftables)) {
    throw new CoiError(ErrorCodes.INTERNAL, 'nft printed JSON without an "nftables" array');
  }

  const tables = new Set<string>();
  const byKey = new Map<string, InstalledSandbox>();
  const unknown: string[] = [];
  const get = (key: string): InstalledSandbox => {
    let s = byKey.get(key);
    if (!s) {
      s = { key, bootBlocked: false, ingress: false, filter: false, objects: [] };
      byKey.set(key, s);
    }
    return s;
  };

  for (const item of doc.nftables) {
    if (!isRecord(item)) continue;
    const [kind] = Object.keys(item);
    if (kind === undefined || kind === 'metainfo') continue;
    const obj = item[kind];
    if (!isRecord(obj)) continue;
    const family = str(obj, 'family');
    const table = kind === 'table' ? str(obj, 'name') : str(obj, 'table');
    const where = `${family} ${table}`;
    if (!OUR_TABLES.has(where)) continue;
    if (kind === 'table') {
      tables.add(where);
      continue;
    }
    const name = kind === 'rule' ? str(obj, 'chain') : str(obj, 'name');
    if (name === undefined) continue;
    const label = `${where} ${kind} ${name}`;

    if (kind === 'rule') {
      // Only the identity rules carry information; other rules belong to chains counted below.
      const comment = str(obj, 'comment');
      const m = comment === undefined ? null : RE.comment.exec(comment);
      if (!m || family !== INGRESS_FAMILY || (m[1] !== COMMENT_SANDBOX && m[1] !== COMMENT_BOOT)) continue;
      const f = fields(m[2] ?? '');
      if (f.key === undefined) continue;
      const s = get(f.key);
      if (f.iface !== undefined) s.hostIface = f.iface;
      if (m[1] === COMMENT_SANDBOX) {
        if (f.mode !== undefined && (NETWORK_MODES as readonly string[]).includes(f.mode)) s.mode = f.mode as NetworkMode;
        if (f.backend === 'firewalld') s.backend = 'firewalld';
        const c = counterOf(obj);
        if (c) {
          s.packets = c.packets;
          s.bytes = c.bytes;
        }
      }
      continue;
    }

    let key: string | undefined;
    if (kind === 'chain') {
      if (family === INGRESS_FAMILY) {
        const ing = RE.ingress.exec(name);
        const boot = RE.boot.exec(name);
        if (ing?.[1]) {
          key = ing[1];
          get(key).ingress = true;
        } else if (boot?.[1]) {
          key = boot[1];
          get(key).bootBlocked = true;
        }
      } else if ((SHARED_CHAINS as readonly string[]).includes(name)) {
        continue;
      } else {
        const sb = RE.sandbox.exec(name);
        if (sb?.[1]) {
          key = sb[1];
          get(key).filter = true;
        }
      }
    } else if (kind === 'set') {
      key = RE.set.exec(name)?.[1];
    } else if (kind === 'limit') {
      key = RE.limit.exec(name)?.[1];
    }
    if (key === undefined) unknown.push(label);
    else get(key).objects.push(label);
  }

  const sandboxes = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const s of sandboxes) s.objects.sort();
  return { tables: [...tables].sort(), sandboxes, unknown: unknown.sort() };
}

/**
 * Installed sandboxes whose container is not among `live` (the containers that
 * should have rules). Keys are compared, so hostile names match their own
 * hashed keys and nothing else.
 */
export function findOrphans(installed: InstalledRules, live: Iterable<string>): InstalledSandbox[] {
  const keep = new Set<string>();
  for (const c of live) if (c.length > 0) keep.add(sandboxKey(c));
  return installed.sandboxes.filter((s) => !keep.has(s.key));
}
