/**
 * DNS tunnelling: data smuggled out in the names of DNS queries
 * (`<base32 chunk>.<seq>.t.attacker.example`). Two feeds:
 *
 * - the guard's nft rules (network/render.ts) test every UDP query a
 *   restricted sandbox sends, in the kernel, and log those shaped like a
 *   tunnel: a first label of 52-63 characters (`dnslabel`), a packet long
 *   enough for a 100+ character name (`dnslong`), queries beyond 120 a minute
 *   (`dnsrate`). The log line carries the addresses but not the name (nf_log
 *   prints headers only), so these findings name the resolver, not the domain:
 *   `dnslabel` and `dnslong` are HIGH, `dnsrate` alone WARNING;
 * - names, when a feed of them exists (a resolver's log; none is wired yet):
 *   the analysis below.
 *
 * - long-label (HIGH): a label of 52+ characters or a subdomain part of 100+:
 *   names built to carry data (DNS allows 63 per label, 253 in all);
 * - high-entropy (HIGH): 3 or more names under one domain within the window
 *   whose subdomain part is long (24+) and random-looking (Shannon entropy
 *   ≥ 3.6 bits/char, what base32/hex payloads give and words do not);
 * - query-rate: more than `dnsQueryThreshold` queries per minute; HIGH when
 *   most of them are distinct subdomains of one domain (a tunnel's signature),
 *   WARNING otherwise (a crawler, a test suite hammering a resolver).
 */
import { displaySafe, eventFactory } from './common';
import type { Detector, DetectorContext, DnsQuery, NetworkPacket, Severity, ThreatEvent } from './types';

const ID = 'dns-tunnel';
const MITRE = ['T1071.004', 'T1048', 'T1572'];

export interface DnsOptions {
  windowMs: number;
  /** Queries per minute before the rate alone is reported. */
  rateThreshold: number;
  longLabel: number;
  longSubdomain: number;
  entropyMinLength: number;
  entropyBits: number;
  entropyNames: number;
}

export const DEFAULT_DNS_OPTIONS: DnsOptions = {
  windowMs: 60_000,
  rateThreshold: 100,
  longLabel: 52,
  longSubdomain: 100,
  entropyMinLength: 24,
  entropyBits: 3.6,
  entropyNames: 3,
};

/** Shannon entropy in bits per character. */
export function entropy(s: string): number {
  if (!s) return 0;
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

const SECOND_LEVEL = new Set(['co', 'com', 'net', 'org', 'gov', 'edu', 'ac', 'or', 'ne', 'go', 'gob', 'mil', 'nic', 'ltd', 'plc', 'sch']);

/** Registrable domain and the part before it: approximated, no public-suffix list. */
export function splitName(name: string): { domain: string; sub: string; labels: string[] } {
  const clean = name.toLowerCase().replace(/\.$/, '').slice(0, 253);
  const labels = clean.split('.').filter((l) => l.length > 0);
  let keep = 2;
  const tld = labels[labels.length - 1] ?? '';
  const sld = labels[labels.length - 2] ?? '';
  if (tld.length === 2 && SECOND_LEVEL.has(sld) && labels.length >= 3) keep = 3;
  const domain = labels.slice(-keep).join('.');
  const sub = labels.slice(0, Math.max(0, labels.length - keep)).join('.');
  return { domain, sub, labels };
}

export interface DnsFinding {
  level: Severity;
  rule: 'long-label' | 'high-entropy' | 'query-rate';
  domain: string;
  queries: number;
  examples: string[];
  maxLabelLength: number;
  maxEntropy: number;
  why: string;
}

/** Looks at the queries within `windowMs` before `now`. Pure. */
export function analyzeDnsQueries(queries: readonly DnsQuery[], now: number, opts: DnsOptions = DEFAULT_DNS_OPTIONS): DnsFinding[] {
  const recent = queries.filter((q) => q.time <= now && now - q.time <= opts.windowMs).slice(-20_000);
  interface Stat {
    queries: number;
    subs: Set<string>;
    long: string[];
    random: string[];
    maxLabel: number;
    maxEntropy: number;
  }
  const byDomain = new Map<string, Stat>();
  for (const q of recent) {
    const { domain, sub, labels } = splitName(q.name);
    if (!domain) continue;
    let s = byDomain.get(domain);
    if (!s) byDomain.set(domain, (s = { queries: 0, subs: new Set(), long: [], random: [], maxLabel: 0, maxEntropy: 0 }));
    s.queries++;
    if (sub) s.subs.add(sub);
    const maxLabel = Math.max(0, ...labels.map((l) => l.length));
    s.maxLabel = Math.max(s.maxLabel, maxLabel);
    const flat = sub.replace(/\./g, '');
    const h = flat.length >= opts.entropyMinLength ? entropy(flat) : 0;
    s.maxEntropy = Math.max(s.maxEntropy, h);
    if (maxLabel >= opts.longLabel || sub.length >= opts.longSubdomain) s.long.push(q.name);
    else if (h >= opts.entropyBits && !s.random.includes(q.name)) s.random.push(q.name);
  }
  const findings: DnsFinding[] = [];
  const base = (domain: string, s: Stat) => ({ domain, queries: s.queries, maxLabelLength: s.maxLabel, maxEntropy: Math.round(s.maxEntropy * 100) / 100 });
  for (const [domain, s] of byDomain) {
    if (s.long.length) {
      findings.push({ ...base(domain, s), level: 'high', rule: 'long-label', examples: s.long.slice(0, 3), why: `${s.long.length} quer${s.long.length === 1 ? 'y' : 'ies'} with labels up to ${s.maxLabel} characters` });
    } else if (s.random.length >= opts.entropyNames) {
      findings.push({ ...base(domain, s), level: 'high', rule: 'high-entropy', examples: s.random.slice(0, 3), why: `${s.random.length} random-looking subdomains (entropy up to ${s.maxEntropy.toFixed(2)} bits/char)` });
    }
  }
  const perMinute = recent.length * (60_000 / opts.windowMs);
  if (perMinute > opts.rateThreshold) {
    let top: [string, Stat] | undefined;
    for (const e of byDomain) if (!top || e[1].queries > top[1].queries) top = e;
    if (top) {
      const [domain, s] = top;
      const tunnelShaped = s.queries > opts.rateThreshold / 2 && s.subs.size >= s.queries * 0.5;
      findings.push({
        ...base(domain, s),
        level: tunnelShaped ? 'high' : 'warning',
        rule: 'query-rate',
        examples: [...s.subs].slice(0, 3).map((x) => `${x}.${domain}`),
        why: `${Math.round(perMinute)} queries per minute (limit ${opts.rateThreshold})${tunnelShaped ? `, ${s.subs.size} distinct subdomains of ${domain}` : ''}`,
      });
    }
  }
  return findings;
}

export interface NotedDnsFinding {
  level: Severity;
  rule: 'long-first-label' | 'long-query' | 'query-rate';
  resolver: string;
  source?: string;
  count: number;
  windowMs: number;
  why: string;
}

const NOTED: Record<string, { level: Severity; rule: NotedDnsFinding['rule']; why: string }> = {
  dnslabel: { level: 'high', rule: 'long-first-label', why: 'with a first label of 52-63 characters: data, not a host name' },
  dnslong: { level: 'high', rule: 'long-query', why: 'long enough to carry a name of 100+ characters' },
  dnsrate: { level: 'warning', rule: 'query-rate', why: 'beyond 120 queries a minute' },
};

/**
 * The DNS queries the firewall let through but noted since the last poll,
 * one finding per rule and resolver. Pure.
 */
export function judgeNotedPackets(packets: readonly NetworkPacket[]): NotedDnsFinding[] {
  const byKey = new Map<string, NotedDnsFinding & { first: number; last: number }>();
  for (const p of packets.slice(-1000)) {
    if (p.action !== 'log') continue;
    const n = NOTED[p.rule];
    if (!n) continue;
    const resolver = p.dst ?? '(unknown)';
    const key = `${p.rule}:${resolver}`;
    const f = byKey.get(key);
    if (f) {
      f.count++;
      f.first = Math.min(f.first, p.time);
      f.last = Math.max(f.last, p.time);
    } else byKey.set(key, { level: n.level, rule: n.rule, resolver, ...(p.src ? { source: p.src } : {}), count: 1, windowMs: 0, why: n.why, first: p.time, last: p.time });
  }
  return [...byKey.values()].map(({ first, last, ...f }) => ({ ...f, windowMs: last - first }));
}

export const dnsTunnelDetector: Detector = {
  id: ID,
  title: 'DNS tunnelling',
  severity: 'high',
  mitre: MITRE,
  exceptions: [],
  evaluate(current, _previous, ctx: DetectorContext): ThreatEvent[] {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const noted = judgeNotedPackets(ctx.packets ?? []).map((f) =>
      make({
        level: f.level,
        category: 'dns_tunnel',
        title: f.level === 'high' ? 'DNS tunnelling' : 'High DNS query rate',
        description: `${f.count} DNS quer${f.count === 1 ? 'y' : 'ies'} to ${displaySafe(f.resolver, 64)} ${f.why}.`,
        evidence: {
          dns: { domain: '', queries: f.count, windowMs: f.windowMs, examples: [], resolver: f.resolver, ...(f.source ? { source: f.source } : {}) },
          network: { proto: 'udp', remote: f.resolver, port: 53, local: f.source ?? '' },
          rule: `${ID}/${f.rule}`,
          key: `kernel:${f.rule}:${f.resolver}`,
        },
      }),
    );
    if (!ctx.dnsQueries?.length) return noted;
    const opts = { ...DEFAULT_DNS_OPTIONS, rateThreshold: ctx.thresholds.dnsQueryThreshold };
    return [...noted, ...analyzeDnsQueries(ctx.dnsQueries, current.takenAt, opts).map((f) =>
      make({
        level: f.level,
        category: 'dns_tunnel',
        title: f.rule === 'query-rate' ? 'High DNS query rate' : 'DNS tunnelling',
        description: `DNS queries under ${displaySafe(f.domain, 80)}: ${f.why}. E.g. ${displaySafe(f.examples[0] ?? '', 120)}`,
        evidence: {
          dns: { domain: f.domain, queries: f.queries, windowMs: opts.windowMs, examples: f.examples, maxLabelLength: f.maxLabelLength, maxEntropy: f.maxEntropy },
          rule: `${ID}/${f.rule}`,
          key: `${f.domain}:${f.rule}`,
        },
      }),
    )];
  },
};
