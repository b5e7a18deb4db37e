/**
 * Names of everything the guard puts into nftables, and the one function that
 * turns a container name into the key those names are built from. The renderer
 * and the parser both use this module, so whatever one writes the other finds.
 */
import { createHash } from 'node:crypto';
import { CoiError, ErrorCodes } from '../../errors';

/** Forward and input filtering (stateful: conntrack exists in these hooks). */
export const FILTER_TABLE = 'coi_guard';
export const FILTER_FAMILY = 'inet';
/** Per-veth ingress chains: identity, accounting, boot block, stateless drops. */
export const INGRESS_TABLE = 'coi_guard_ingress';
export const INGRESS_FAMILY = 'netdev';

/** The names of our two tables. One guard owns one pair and replaces it whole on every apply. */
export interface TableNames {
  filter: string;
  ingress: string;
}
export const DEFAULT_TABLES: TableNames = { filter: FILTER_TABLE, ingress: INGRESS_TABLE };

/**
 * A guard scope keeps a second guard (a test's, on a private socket) out of
 * the host guard's way: its own tables `coi_guard_<scope>` and
 * `coi_guard_ingress_<scope>`, and only the instances labelled with its scope.
 */
const SCOPE = /^[a-z0-9]{1,12}$/;
export function validScope(scope: string): boolean {
  return SCOPE.test(scope);
}
export function tablesFor(scope: string | undefined): TableNames {
  if (!scope) return DEFAULT_TABLES;
  if (!validScope(scope)) throw new CoiError(ErrorCodes.INVALID_INPUT, `guard scope ${JSON.stringify(scope)} must be 1-12 of a-z 0-9`);
  return { filter: `${FILTER_TABLE}_${scope}`, ingress: `${INGRESS_TABLE}_${scope}` };
}

/** Chain and object name prefixes: `<prefix><key>`; allow sets are `al_<key>_net` and `al_<key>_dns`. */
export const NAME = {
  ingress: 'in_',
  boot: 'boot_',
  sandbox: 'sb_',
  logLimit: 'lg_',
  /** The DNS query rate above which a sandbox's queries are logged (`dq_<key>`). */
  dnsRateLimit: 'dq_',
  allowSet: 'al_',
} as const;
export const SET_SUFFIX = { net: '_net', dns: '_dns' } as const;

/** Shared chains of the filter table that belong to no sandbox. */
export const SHARED_CHAINS = ['refuse', 'forward', 'input'] as const;

/** Marker at the start of the comment of each ingress chain's first rule. */
export const COMMENT_SANDBOX = 'coi:sandbox';
export const COMMENT_BOOT = 'coi:boot';

/**
 * Incus instance names: letters, digits and hyphens, at most 63 characters.
 * Such a name is its own key, so chains and log lines read naturally.
 */
const PLAIN_NAME = /^[A-Za-z0-9-]{1,63}$/;

/**
 * The key that names a sandbox's nft objects and appears in its log prefixes.
 *
 * A name Incus would accept is used as is. Anything else (which our code should
 * never pass, but a hostile or corrupt record might) is reduced to safe
 * characters and suffixed with `_` and 8 hex digits of its SHA-256: `_` never
 * occurs in an Incus name, so a hashed key cannot collide with a plain one, and
 * the hash keeps two hostile names that sanitise alike apart. Keys contain only
 * [A-Za-z0-9_-], which is safe inside nft identifiers and quoted strings and
 * contains no `:` (the log prefix separator).
 */
export function sandboxKey(container: string): string {
  if (container.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, 'a sandbox without a container name cannot have network rules');
  if (PLAIN_NAME.test(container)) return container;
  const safe = container.replace(/[^A-Za-z0-9-]/g, '_').slice(0, 40);
  const hash = createHash('sha256').update(container, 'utf8').digest('hex').slice(0, 8);
  return `${safe}_${hash}`;
}

/**
 * Host-side interface names are not sanitised but refused: a rule bound to a
 * "cleaned" name would guard some other device, or none. Linux allows 1-15
 * bytes without '/', ':' or whitespace; we allow the subset Incus generates
 * and users type, which is also safe inside an nft quoted string.
 */
const IFACE = /^[A-Za-z0-9_.-]{1,15}$/;

export function assertHostIface(name: string, container: string): void {
  if (!IFACE.test(name) || name === '.' || name === '..') {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `the host-side interface name ${JSON.stringify(name)} of sandbox ${JSON.stringify(container)} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)`, {
      details: { container, hostIface: name },
    });
  }
}

export const chainIngress = (key: string): string => `${NAME.ingress}${key}`;
export const chainBoot = (key: string): string => `${NAME.boot}${key}`;
export const chainSandbox = (key: string): string => `${NAME.sandbox}${key}`;
export const limitLog = (key: string): string => `${NAME.logLimit}${key}`;
export const limitDnsRate = (key: string): string => `${NAME.dnsRateLimit}${key}`;
export const setAllowNet = (key: string): string => `${NAME.allowSet}${key}${SET_SUFFIX.net}`;
export const setAllowDns = (key: string): string => `${NAME.allowSet}${key}${SET_SUFFIX.dns}`;

/**
 * What a logged packet met: dropped, refused, or let through but noted (`log`:
 * DNS queries shaped like a tunnel, which the monitor judges).
 */
export type LogAction = 'drop' | 'reject' | 'log';

/** The log prefix of one rule: `coi:<drop|reject|log>:<key>:<rule> ` (the space ends it in the kernel line). */
export function logPrefix(action: LogAction, key: string, rule: string): string {
  return `coi:${action}:${key}:${rule} `;
}

/**
 * Names of the rules that log, as they appear in log prefixes and events.
 * Stable: the monitor and the audit log key on them.
 */
export const RULES = {
  /** The sandbox's rules are not in place yet (boot block): everything dropped. */
  boot: 'boot',
  /** 802.1Q/802.1ad frames: br_netfilter would pass them unfiltered. */
  vlan: 'vlan',
  ipv6: 'ipv6',
  /** Any other non-IPv4, non-ARP frame. */
  l2: 'l2',
  private: 'private',
  linklocal: 'linklocal',
  cgnat: 'cgnat',
  loopback: 'loopback',
  multicast: 'multicast',
  reserved: 'reserved',
  /** An address of the host itself other than DNS/DHCP on the gateway. */
  host: 'host',
  dns: 'dns',
  notallowed: 'notallowed',
  /** Let through, noted: a DNS query whose first label is 52-63 characters (data, not a host name). */
  dnslabel: 'dnslabel',
  /** Let through, noted: a DNS query packet long enough for a name of 100+ characters. */
  dnslong: 'dnslong',
  /** Let through, noted: DNS queries beyond the sandbox's query rate. */
  dnsrate: 'dnsrate',
  /** Let through, noted: a DNS query to a resolver other than the sandbox's gateway (whose log the monitor reads). */
  dnsext: 'dnsext',
} as const;
export type RuleName = (typeof RULES)[keyof typeof RULES];
