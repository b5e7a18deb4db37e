/**
 * Allowlist names, resolved on the host by the guard (the sandbox itself may
 * not use DNS: it could carry a tunnel), their refresh schedule, the on-disk
 * cache that survives a guard restart, and the managed block of the
 * container's /etc/hosts. Everything but `nodeResolve4` and the cache's file
 * access is pure.
 *
 * Timing: each answer's TTL is floored (60 s), and a name is resolved again
 * after min(TTL, refresh_interval_minutes). A new address is allowed at once;
 * an address the name no longer resolves to stays allowed for new connections
 * until its TTL plus a grace period has passed (clients cache answers), and
 * open connections are never cut (conntrack accepts established flows first).
 * When resolution fails, the last known addresses stay in force and are tried
 * again after the floor.
 */
import { promises as dnsp } from 'node:dns';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { parseIpv4 } from './ipv4';
import { sandboxKey } from './names';
import type { ResolvedIp } from './types';

export interface DnsAnswer {
  address: string;
  /** Seconds, as the server said. */
  ttl: number;
}

/** Resolves a name's A records with their TTLs, asking `servers` ("ip" or "ip:port"), or the host's resolvers when undefined. */
export type Resolve4 = (name: string, servers: readonly string[] | undefined) => Promise<DnsAnswer[]>;

export function nodeResolve4(opts: { timeoutMs?: number; tries?: number } = {}): Resolve4 {
  return async (name, servers) => {
    const r = new dnsp.Resolver({ timeout: opts.timeoutMs ?? 2_000, tries: opts.tries ?? 2 });
    if (servers && servers.length > 0) r.setServers([...servers]);
    const answers = await r.resolve4(name, { ttl: true });
    return answers.map((a) => ({ address: a.address, ttl: a.ttl }));
  };
}

export interface KnownIp {
  ip: string;
  /** Floored TTL in seconds. */
  ttl: number;
  /** When it was last seen in an answer (ms since the epoch). */
  seenAt: number;
}

export interface NameState {
  /** The addresses of the latest successful answer (what /etc/hosts shows). */
  current: KnownIp[];
  /** Addresses of earlier answers still within TTL + grace. */
  previous: KnownIp[];
  /** The last attempt failed: this message. */
  error?: string;
}

export interface TimingOptions {
  /** Least TTL honoured, seconds (60). */
  floorSec: number;
  /** How long an address outlives its TTL for new connections, seconds. */
  graceSec: number;
}

export const DEFAULT_TIMING: TimingOptions = { floorSec: 60, graceSec: 600 };

const expiry = (k: KnownIp, t: TimingOptions): number => k.seenAt + (k.ttl + t.graceSec) * 1000;

/**
 * The state of a name after an attempt: a successful answer replaces `current`
 * and moves addresses no longer in it to `previous`; a failure keeps `current`
 * in force (seen again now, for one floor period) and records the error.
 */
export function nextNameState(prev: NameState | undefined, result: { answers: DnsAnswer[] } | { error: string }, now: number, t: TimingOptions): NameState {
  const alive = (k: KnownIp) => expiry(k, t) > now;
  if ('error' in result) {
    const current = (prev?.current ?? []).map((k) => ({ ip: k.ip, ttl: t.floorSec, seenAt: now }));
    return { current, previous: (prev?.previous ?? []).filter(alive), error: result.error };
  }
  const byIp = new Map<string, KnownIp>();
  for (const a of result.answers) {
    const ttl = Math.max(t.floorSec, Math.floor(a.ttl));
    const had = byIp.get(a.address);
    if (!had || had.ttl < ttl) byIp.set(a.address, { ip: a.address, ttl, seenAt: now });
  }
  const current = [...byIp.values()].sort((a, b) => (a.ip < b.ip ? -1 : 1));
  const previous = [...(prev?.current ?? []), ...(prev?.previous ?? [])].filter((k) => !byIp.has(k.ip) && alive(k));
  const seen = new Set<string>();
  return { current, previous: previous.filter((k) => (seen.has(k.ip) ? false : (seen.add(k.ip), true))) };
}

/** The addresses the rules allow, each until TTL + grace after it was last seen. */
export function allowedIps(names: ReadonlyMap<string, NameState>, t: TimingOptions): ResolvedIp[] {
  const out: ResolvedIp[] = [];
  for (const s of names.values()) for (const k of [...s.current, ...s.previous]) out.push({ ip: k.ip, expiresAt: expiry(k, t) });
  return out;
}

/** Seconds until the next resolution: the least TTL, at most the refresh interval; the floor after a failure. */
export function refreshDelaySec(names: ReadonlyMap<string, NameState>, refreshMin: number, t: TimingOptions): number {
  let delay = refreshMin * 60;
  for (const s of names.values()) {
    if (s.error !== undefined || s.current.length === 0) delay = Math.min(delay, t.floorSec);
    for (const k of s.current) delay = Math.min(delay, k.ttl);
  }
  return Math.max(1, delay);
}

/**
 * name → sorted current addresses: what /etc/hosts should say. With `fenced`
 * (the addresses the installed rules allow), only those: /etc/hosts never
 * names an address before the fence lets it through, so whoever reads a new
 * address there can connect to it at once. While none of a name's current
 * addresses is fenced, its earlier ones that still are stay named.
 */
export function hostsEntries(names: ReadonlyMap<string, NameState>, fenced?: ReadonlySet<string>): Array<{ ip: string; name: string }> {
  const out: Array<{ ip: string; name: string }> = [];
  for (const [name, s] of [...names.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    let show = fenced ? s.current.filter((k) => fenced.has(k.ip)) : s.current;
    // The new answer is not fenced yet (its apply failed): keep naming the earlier addresses the rules still allow.
    if (fenced && show.length === 0) show = s.previous.filter((k) => fenced.has(k.ip)).sort((a, b) => (a.ip < b.ip ? -1 : 1));
    for (const k of show) out.push({ ip: k.ip, name });
  }
  return out;
}

/** `[[network.hosts]]` of the label as /etc/hosts entries, in the configured order. */
export function staticHostsEntries(hosts: ReadonlyArray<{ ip: string; names: readonly string[] }> | undefined): Array<{ ip: string; name: string }> {
  return (hosts ?? []).flatMap((h) => h.names.map((name) => ({ ip: h.ip, name })));
}

// ── /etc/hosts ───────────────────────────────────────────────────────────────

export const HOSTS_BEGIN = '# BEGIN COI allowlist (written by the COI guard; changes here are replaced)';
export const HOSTS_END = '# END COI allowlist';

/** The file with our block replaced (or appended), everything else kept as it was. */
export function mergeHosts(current: string, entries: ReadonlyArray<{ ip: string; name: string }>): string {
  const lines = current.split('\n');
  const out: string[] = [];
  let inBlock = false;
  for (const l of lines) {
    if (l === HOSTS_BEGIN) {
      inBlock = true;
      continue;
    }
    if (inBlock) {
      if (l === HOSTS_END) inBlock = false;
      continue;
    }
    out.push(l);
  }
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  if (entries.length > 0) out.push(HOSTS_BEGIN, ...entries.map((e) => `${e.ip}\t${e.name}`), HOSTS_END);
  return `${out.join('\n')}\n`;
}

// ── cache ────────────────────────────────────────────────────────────────────

const cacheSchema = z.object({
  version: z.literal(1),
  container: z.string(),
  updatedAt: z.string(),
  names: z.record(
    z.string(),
    z.object({ current: z.array(z.object({ ip: z.string(), ttl: z.number(), seenAt: z.number() })), previous: z.array(z.object({ ip: z.string(), ttl: z.number(), seenAt: z.number() })) }),
  ),
});

export function cacheFile(dir: string, container: string): string {
  return path.join(dir, `${sandboxKey(container)}.json`);
}

export async function writeCache(dir: string, container: string, names: ReadonlyMap<string, NameState>, now: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const doc = {
    version: 1,
    container,
    updatedAt: new Date(now).toISOString(),
    names: Object.fromEntries([...names.entries()].map(([n, s]) => [n, { current: s.current, previous: s.previous }])),
  };
  const file = cacheFile(dir, container);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, `${JSON.stringify(doc)}\n`, { mode: 0o600 });
  await fs.rename(tmp, file);
}

/**
 * The cached names of a container, as last known good: what a restarted guard
 * enforces until its first resolution answers (or, if that fails, after).
 */
export async function readCache(dir: string, container: string, now: number, t: TimingOptions): Promise<Map<string, NameState> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(cacheFile(dir, container), 'utf8');
  } catch {
    return undefined;
  }
  let parsed;
  try {
    parsed = cacheSchema.safeParse(JSON.parse(text));
  } catch {
    return undefined;
  }
  if (!parsed.success || parsed.data.container !== container) return undefined;
  const out = new Map<string, NameState>();
  const valid = (k: KnownIp) => parseIpv4(k.ip) !== undefined && Number.isFinite(k.ttl) && Number.isFinite(k.seenAt);
  for (const [name, s] of Object.entries(parsed.data.names)) {
    out.set(name, {
      current: s.current.filter(valid).map((k) => ({ ip: k.ip, ttl: t.floorSec, seenAt: now })),
      previous: s.previous.filter((k) => valid(k) && expiry(k, t) > now),
    });
  }
  return out;
}

/** Cache files whose container is not among `keep` (keys compared). */
export async function staleCacheFiles(dir: string, keep: Iterable<string>): Promise<string[]> {
  let files: string[];
  try {
    files = await fs.readdir(dir);
  } catch {
    return [];
  }
  const live = new Set([...keep].map((c) => `${sandboxKey(c)}.json`));
  return files.filter((f) => f.endsWith('.json') && !live.has(f)).map((f) => path.join(dir, f));
}
