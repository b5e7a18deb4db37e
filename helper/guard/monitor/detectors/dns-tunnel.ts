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
 * - the names themselves, from the bridge's dnsmasq query log (dns-feed.ts),
 *   judged below. They catch what packet lengths cannot: short random labels
 *   at a modest rate.
 *
 * - long-label (HIGH): a label of 52+ characters or a subdomain part of 100+:
 *   names built to carry data (DNS allows 63 per label, 253 in all);
 * - high-entropy (HIGH): under one registrable domain within the window, 3 or
 *   more distinct names with random-looking labels (`randomLabel`) that
 *   together carry 320+ bits (length × Shannon entropy of those labels). One
 *   CDN or cloud host name is random-looking too (`d2c8v52ll5s99u.cloudfront.net`,
 *   ~45 bits): it takes many distinct ones under one domain within a minute,
 *   which is what a tunnel does and a build does not;
 * - unprintable (HIGH): 3 or more names dnsmasq could not print (8-bit
 *   labels: iodine's raw encodings), which no host name has;
 * - query-rate: more than `dnsQueryThreshold` (`dns_query_threshold`) queries
 *   per minute; HIGH when most of them are distinct subdomains of one domain
 *   (a tunnel's signature), WARNING otherwise (a crawler, a test suite
 *   hammering a resolver), as the reference's nft monitor does.
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
  /** Shortest label (or hyphen-separated part of one) judged for randomness. */
  randomLabelMin: number;
  /** Distinct random-looking names under one domain before they count as a tunnel… */
  randomNames: number;
  /** …and the bits they must carry together. */
  randomBits: number;
  unprintableNames: number;
}

export const DEFAULT_DNS_OPTIONS: DnsOptions = {
  windowMs: 60_000,
  rateThreshold: 100,
  longLabel: 52,
  longSubdomain: 100,
  randomLabelMin: 10,
  randomNames: 3,
  randomBits: 320,
  unprintableNames: 3,
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

export interface LabelShape {
  length: number;
  entropy: number;
  letters: number;
  digits: number;
  /** Changes between a letter and a digit, reading left to right. */
  switches: number;
  /** Share of the letters that are vowels (y included). */
  vowels: number;
  longestConsonantRun: number;
}

export function labelShape(part: string): LabelShape {
  let letters = 0;
  let digits = 0;
  let vowels = 0;
  let switches = 0;
  let run = 0;
  let longest = 0;
  let prev: 'l' | 'd' | 'o' | undefined;
  for (const c of part) {
    const cls = c >= 'a' && c <= 'z' ? 'l' : c >= '0' && c <= '9' ? 'd' : 'o';
    if (cls === 'l') letters++;
    if (cls === 'd') digits++;
    if (prev && cls !== 'o' && prev !== 'o' && cls !== prev) switches++;
    prev = cls;
    if (cls === 'l' && 'aeiouy'.includes(c)) vowels++;
    if (cls === 'l' && !'aeiouy'.includes(c)) longest = Math.max(longest, ++run);
    else run = 0;
  }
  return { length: part.length, entropy: entropy(part), letters, digits, switches, vowels: letters ? vowels / letters : 0, longestConsonantRun: longest };
}

/**
 * Does this label part look like encoded data rather than a word or a
 * readable name? Entropy alone cannot tell at these lengths (`registry` and a
 * random 8-character string score alike), so it asks for what encoders
 * produce and words do not: hex; letters and digits interleaved (base32,
 * base36); or letters with too few vowels for a word. Near-maximal entropy is
 * required on top (repeated characters are not data).
 */
export function randomLabel(part: string, minLength = DEFAULT_DNS_OPTIONS.randomLabelMin): boolean {
  return judgeLabel(part, minLength) !== undefined;
}

/** The label's entropy when it looks random, else undefined. */
function judgeLabel(part: string, minLength: number): number | undefined {
  if (part.length < minLength) return undefined;
  const s = labelShape(part);
  const hex = /^[0-9a-f]+$/.test(part);
  // Against the most a string of this length over its alphabet can have (hex: 4 bits a character).
  if (s.entropy < 0.75 * Math.log2(Math.min(part.length, hex ? 16 : 36))) return undefined;
  if (hex && part.length >= 12 && s.digits >= 3 && s.letters >= 2) return s.entropy;
  if (s.digits >= 2 && s.letters >= 3 && s.switches >= 3) return s.entropy;
  return s.digits <= 1 && part.length >= 12 && s.vowels < 0.3 && s.longestConsonantRun >= 4 ? s.entropy : undefined;
}

/**
 * Scores of subdomains already judged: the window is looked at again at every
 * poll with new names, and each old name costs a lookup instead of a score.
 */
const scored = new Map<string, { bits: number; maxEntropy: number }>();
const SCORED_MAX = 16_384;

/** Bits a name's subdomain carries in random-looking parts (length × entropy of each), 0 for a readable one. */
export function randomBitsOf(sub: string, minLength = DEFAULT_DNS_OPTIONS.randomLabelMin): { bits: number; maxEntropy: number } {
  const key = `${minLength}:${sub}`;
  const known = scored.get(key);
  if (known) return known;
  let bits = 0;
  let maxEntropy = 0;
  // Hyphens and underscores join readable parts (ec2-54-12-34-56, my-lb-1234567890): each part on its own.
  for (const part of sub.split(/[.\-_]+/)) {
    const h = judgeLabel(part, minLength);
    if (h === undefined) continue;
    bits += part.length * h;
    maxEntropy = Math.max(maxEntropy, h);
  }
  const r = { bits, maxEntropy };
  if (scored.size >= SCORED_MAX) scored.clear();
  scored.set(key, r);
  return r;
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
  rule: 'long-label' | 'high-entropy' | 'unprintable' | 'query-rate';
  /** Empty for unprintable names (no domain can be told). */
  domain: string;
  queries: number;
  examples: string[];
  maxLabelLength: number;
  maxEntropy: number;
  why: string;
}

const MAX_EXAMPLES = 5;

/** Looks at the queries within `windowMs` before `now`. Pure. */
export function analyzeDnsQueries(queries: readonly DnsQuery[], now: number, opts: DnsOptions = DEFAULT_DNS_OPTIONS): DnsFinding[] {
  const recent = queries.filter((q) => q.time <= now && now - q.time <= opts.windowMs).slice(-20_000);
  interface Stat {
    queries: number;
    subs: Set<string>;
    long: string[];
    random: Set<string>;
    bits: number;
    maxLabel: number;
    maxEntropy: number;
  }
  const byDomain = new Map<string, Stat>();
  let unprintable = 0;
  for (const q of recent) {
    if (q.unprintable) {
      unprintable++;
      continue;
    }
    const { domain, sub, labels } = splitName(q.name);
    if (!domain) continue;
    let s = byDomain.get(domain);
    if (!s) byDomain.set(domain, (s = { queries: 0, subs: new Set(), long: [], random: new Set(), bits: 0, maxLabel: 0, maxEntropy: 0 }));
    s.queries++;
    if (sub) s.subs.add(sub);
    const maxLabel = Math.max(0, ...labels.map((l) => l.length));
    s.maxLabel = Math.max(s.maxLabel, maxLabel);
    if (maxLabel >= opts.longLabel || sub.length >= opts.longSubdomain) {
      s.long.push(q.name);
      continue;
    }
    // The same name asked again (A then AAAA, a retry) carries nothing new.
    if (s.random.has(q.name)) continue;
    const r = randomBitsOf(sub, opts.randomLabelMin);
    if (r.bits > 0) {
      s.random.add(q.name);
      s.bits += r.bits;
      s.maxEntropy = Math.max(s.maxEntropy, r.maxEntropy);
    }
  }
  const findings: DnsFinding[] = [];
  const base = (domain: string, s: Stat) => ({ domain, queries: s.queries, maxLabelLength: s.maxLabel, maxEntropy: Math.round(s.maxEntropy * 100) / 100 });
  for (const [domain, s] of byDomain) {
    if (s.long.length) {
      findings.push({ ...base(domain, s), level: 'high', rule: 'long-label', examples: s.long.slice(0, MAX_EXAMPLES), why: `${s.long.length} quer${s.long.length === 1 ? 'y' : 'ies'} with labels up to ${s.maxLabel} characters` });
    } else if (s.random.size >= opts.randomNames && s.bits >= opts.randomBits) {
      findings.push({
        ...base(domain, s),
        level: 'high',
        rule: 'high-entropy',
        examples: [...s.random].slice(0, MAX_EXAMPLES),
        why: `${s.random.size} distinct random-looking names carrying about ${Math.round(s.bits)} bits (entropy up to ${s.maxEntropy.toFixed(2)} bits/char)`,
      });
    }
  }
  if (unprintable >= opts.unprintableNames) {
    findings.push({ level: 'high', rule: 'unprintable', domain: '', queries: unprintable, examples: [], maxLabelLength: 0, maxEntropy: 0, why: `${unprintable} names with bytes no host name has (the resolver could not print them)` });
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
        examples: [...s.subs].slice(0, MAX_EXAMPLES).map((x) => `${x}.${domain}`),
        why: `${Math.round(perMinute)} queries per minute (limit ${opts.rateThreshold})${tunnelShaped ? `, ${s.subs.size} distinct subdomains of ${domain}` : ''}`,
      });
    }
  }
  return findings;
}

export interface NotedDnsFinding {
  level: Severity;
  rule: 'long-first-label' | 'long-query' | 'query-rate' | 'other-resolver';
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
  dnsext: { level: 'warning', rule: 'other-resolver', why: 'instead of its own resolver, whose log is where the monitor reads the names: these it cannot judge by name' },
};

const NOTED_TITLE: Record<NotedDnsFinding['rule'], string> = {
  'long-first-label': 'DNS tunnelling',
  'long-query': 'DNS tunnelling',
  'query-rate': 'High DNS query rate',
  'other-resolver': 'DNS to another resolver',
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
        title: NOTED_TITLE[f.rule],
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
        description: f.domain ? `DNS queries under ${displaySafe(f.domain, 80)}: ${f.why}. E.g. ${displaySafe(f.examples[0] ?? '', 120)}` : `DNS queries: ${f.why}.`,
        evidence: {
          dns: { domain: f.domain, queries: f.queries, windowMs: opts.windowMs, examples: f.examples, maxLabelLength: f.maxLabelLength, maxEntropy: f.maxEntropy },
          rule: `${ID}/${f.rule}`,
          key: `${f.domain || '(unprintable)'}:${f.rule}`,
        },
      }),
    )];
  },
};
