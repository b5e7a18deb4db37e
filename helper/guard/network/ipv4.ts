/**
 * IPv4 addresses and CIDRs as numbers, for validating and normalising what goes
 * into nft sets. nft itself accepts "10.0.0.5/8" and merges overlaps only with
 * `auto-merge`; we normalise first so the rendered script is canonical (sorted,
 * deduplicated, host bits cleared) and re-rendering is byte-identical.
 */

export interface Cidr4 {
  /** Network address as an unsigned 32-bit number, host bits cleared. */
  base: number;
  prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** "a.b.c.d" to an unsigned number, or undefined. Leading zeros are refused: "010" means octal to some parsers. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "a.b.c.d" or "a.b.c.d/n"; host bits are cleared ("10.1.2.3/8" is 10.0.0.0/8). */
export function parseCidr4(text: string): Cidr4 | undefined {
  const [addr, len, extra] = text.trim().split('/');
  if (addr === undefined || extra !== undefined) return undefined;
  const ip = parseIpv4(addr);
  if (ip === undefined) return undefined;
  let prefix = 32;
  if (len !== undefined) {
    if (!/^(3[0-2]|[12]?\d)$/.test(len)) return undefined;
    prefix = Number(len);
  }
  return { base: (ip & maskOf(prefix)) >>> 0, prefix };
}

/** nft element syntax: a bare address for /32, a prefix otherwise. */
export function formatCidr4(c: Cidr4): string {
  return c.prefix === 32 ? formatIpv4(c.base) : `${formatIpv4(c.base)}/${c.prefix}`;
}

function contains(outer: Cidr4, inner: Cidr4): boolean {
  return outer.prefix <= inner.prefix && ((inner.base & maskOf(outer.prefix)) >>> 0) === outer.base;
}

/**
 * Sorted, without duplicates and without ranges covered by a wider one. Two
 * CIDRs either nest or are disjoint, so dropping the covered ones leaves a set
 * without overlaps, which an interval set accepts.
 */
export function normaliseCidrs(cidrs: readonly Cidr4[]): Cidr4[] {
  const sorted = [...cidrs].sort((a, b) => a.base - b.base || a.prefix - b.prefix);
  const out: Cidr4[] = [];
  for (const c of sorted) {
    const last = out[out.length - 1];
    if (last && contains(last, c)) continue;
    out.push(c);
  }
  return out;
}
