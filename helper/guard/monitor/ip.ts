/**
 * Address facts the detectors need: which ranges are loopback, private,
 * link-local or the cloud metadata endpoint, and CIDR membership. Pure and
 * dependency-free so every detector can share one definition of "private".
 *
 * Addresses arrive already normalised by the /proc parser: dotted quads for
 * IPv4 (IPv4-mapped IPv6 is unwrapped there) and lower-case RFC 5952 text for IPv6.
 */

export type Family = 4 | 6;

/** Parses dotted-quad IPv4 into a 32-bit unsigned number; undefined if not one. */
export function ipv4ToNumber(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const b = Number(m[i]);
    if (b > 255) return undefined;
    n = n * 256 + b;
  }
  return n;
}

/** Parses IPv6 text (with :: and an optional trailing dotted quad) into 16 bytes. */
export function ipv6ToBytes(s: string): Uint8Array | undefined {
  let text = s.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    // A trailing dotted quad is two ordinary hex groups written differently.
    const v4 = ipv4ToNumber(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}${((v4 >>> 16) & 0xffff).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  if (!head || !rest) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return undefined;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return undefined;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

/** RFC 5952 text for 16 bytes: lower case, longest zero run (≥2 groups) as ::, IPv4-mapped as ::ffff:a.b.c.d. */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

/** IPv4-mapped IPv6 (::ffff:a.b.c.d) is the same peer as a.b.c.d: compare and report it as such. */
export function normalizeAddress(address: string): string {
  const m = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(address);
  return m?.[1] ?? address;
}

export function familyOf(address: string): Family | undefined {
  if (ipv4ToNumber(address) !== undefined) return 4;
  if (ipv6ToBytes(address) !== undefined) return 6;
  return undefined;
}

interface ParsedCidr {
  family: Family;
  bytes: Uint8Array;
  prefix: number;
}

function toBytes(address: string): { family: Family; bytes: Uint8Array } | undefined {
  const n = ipv4ToNumber(address);
  if (n !== undefined) return { family: 4, bytes: Uint8Array.of(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff) };
  const b = ipv6ToBytes(address);
  return b ? { family: 6, bytes: b } : undefined;
}

/** "10.0.0.0/8", "fd00::/8" or a bare address (a /32 or /128). Undefined when malformed. */
export function parseCidr(cidr: string): ParsedCidr | undefined {
  const [addr, len, extra] = cidr.trim().split('/');
  if (addr === undefined || extra !== undefined) return undefined;
  const parsed = toBytes(normalizeAddress(addr));
  if (!parsed) return undefined;
  const max = parsed.family === 4 ? 32 : 128;
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { ...parsed, prefix };
}

const cidrCache = new Map<string, ParsedCidr | undefined>();
function cachedCidr(cidr: string): ParsedCidr | undefined {
  if (!cidrCache.has(cidr)) {
    if (cidrCache.size > 4096) cidrCache.clear();
    cidrCache.set(cidr, parseCidr(cidr));
  }
  return cidrCache.get(cidr);
}

export function inCidr(address: string, cidr: string): boolean {
  const c = cachedCidr(cidr);
  const a = toBytes(normalizeAddress(address));
  if (!c || !a || c.family !== a.family) return false;
  let bits = c.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((a.bytes[i] ?? 0) & mask) !== ((c.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

export function inAnyCidr(address: string, cidrs: readonly string[]): boolean {
  return cidrs.some((c) => inCidr(address, c));
}

export const LOOPBACK = ['127.0.0.0/8', '::1/128'];
export const UNSPECIFIED = ['0.0.0.0/32', '::/128'];
/** RFC 1918, CGNAT (RFC 6598), IPv6 ULA: "inside someone's network", never the public internet. */
export const PRIVATE = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'];
export const LINK_LOCAL = ['169.254.0.0/16', 'fe80::/10'];
/** The cloud instance metadata service (AWS/GCP/Azure/OpenStack; AWS's IPv6 one too): credentials live there. */
export const METADATA = ['169.254.169.254/32', 'fd00:ec2::254/128'];

export const isLoopback = (a: string): boolean => inAnyCidr(a, LOOPBACK);
export const isUnspecified = (a: string): boolean => inAnyCidr(a, UNSPECIFIED);
export const isPrivate = (a: string): boolean => inAnyCidr(a, PRIVATE);
export const isLinkLocal = (a: string): boolean => inAnyCidr(a, LINK_LOCAL);
export const isMetadata = (a: string): boolean => inAnyCidr(a, METADATA);

/** "1.2.3.4:80" or "[::1]:80": how a person writes an endpoint. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
