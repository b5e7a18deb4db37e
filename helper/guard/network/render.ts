/**
 * Renders the whole desired network state into ONE nft script that atomically
 * replaces the guard's own tables and touches nothing else (not `inet incus`,
 * not firewalld's tables, not Docker's).
 *
 * Design, and why it is shaped by this kernel (see ../shared/testbed.md §3):
 *
 * 1. `table netdev coi_guard_ingress`: one base chain per sandbox, bound with
 *    `hook ingress device "<hostIface>"` to the container's fixed host-side veth.
 *    Ingress sees every frame the container sends, before bridging or routing,
 *    whatever source address root in the container gives itself. The chain
 *      - counts every frame (the per-sandbox accounting, also for `open`);
 *      - drops, statelessly, what has no business leaving a fenced sandbox:
 *        IPv6 (restricted/allowlist), VLAN-tagged frames (br_netfilter does not
 *        pass them to the inet hooks, so they would cross the bridge unfiltered)
 *        and any other non-IPv4, non-ARP frame;
 *      - stamps IPv4 packets with the sandbox's id in bits 16-27 of skb->mark.
 *    Chains are bound by device *name*: on this kernel (6.16+ netdev hooks) a
 *    chain may name a device that does not exist yet and re-binds when a device
 *    of that name appears (container restart, or Incus renaming its temporary
 *    veth), so a boot block can be in place before the container starts.
 *    A boot block is a separate chain with policy drop on the same device.
 *
 * 2. `table inet coi_guard`: the decisions, in the forward and input hooks at
 *    priority -300 (before Incus's and firewalld's filters, so our log lines and
 *    rejects happen even where they would drop). The sandbox is recognised by
 *    the mark from step 1 (`meta mark & MASK vmap { id : jump sb_<key> }`),
 *    because here `iifname` is the bridge, not the veth. These hooks have
 *    conntrack, so `ct state established,related accept` comes first: an
 *    allowlist refresh that drops an address never cuts a live connection, and
 *    replies to connections made *to* the container pass.
 *    Blocked connections are refused, not silently dropped: TCP gets a reset
 *    ("Connection refused" at once), anything else ICMP admin-prohibited.
 *
 * Why not decide in the other places the kernel offers:
 *  - `bridge` family: no `ct` and no `reject` here (CONFIG_NF_CONNTRACK_BRIDGE,
 *    CONFIG_NFT_BRIDGE_REJECT off): a blocked connect would hang until timeout,
 *    and refreshed allowlists would cut live connections.
 *  - netdev ingress alone: it can `reject with tcp reset`, but runs before
 *    conntrack, so it cannot tell a reply from a new connection.
 *  - inet alone: it sees the bridge, not the veth, and matching the source IP
 *    is bypassed by `ip addr add` inside the container.
 * Container-to-container traffic on the same bridge reaches the inet forward
 * hook only through br_netfilter (`bridge-nf-call-iptables=1`, on here); the
 * guard must check that on hosts where it could be off.
 *
 * The script starts with `table X` + `delete table X` for both tables, then
 * declares them in full, all in one transaction: either the new state is in
 * place or, on any error, the old one still is. The empty state renders only
 * the deletions, which removes everything. The output depends only on the
 * state and `now` (ordering is by key, addresses numerically), so the same
 * state renders byte-identical scripts.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { Cidr4, formatCidr4, formatIpv4, normaliseCidrs, parseCidr4, parseIpv4 } from './ipv4';
import {
  assertHostIface,
  chainBoot,
  chainIngress,
  chainSandbox,
  COMMENT_BOOT,
  COMMENT_SANDBOX,
  DEFAULT_TABLES,
  FILTER_FAMILY,
  INGRESS_FAMILY,
  limitDnsRate,
  limitLog,
  logPrefix,
  RuleName,
  RULES,
  sandboxKey,
  setAllowDns,
  setAllowNet,
  TableNames,
} from './names';
import { BootBlock, NETWORK_MODES, NetworkState, SandboxNetwork } from './types';
import { HOST_TAG, MARK_MASK, markOf, MAX_ID, MAX_TAG } from './marks';
import { ownerComment } from './guard-tables';

/** The most sandboxes with filtered networks one guard can tell apart (ids in the mark, see marks.ts). */
export const MAX_FILTERED_SANDBOXES = MAX_ID;

const INGRESS_PRIORITY = -500;
const FILTER_PRIORITY = -300;
/** Kernel log lines per sandbox and table: enough to see an attack, too few to flood /dev/kmsg. */
const LOG_RATE = 'rate 10/second burst 20 packets';
/**
 * DNS queries beyond this pass but are logged (`dnsrate`): a tunnel moves its
 * data at hundreds of queries a minute; a build resolving its registries does
 * not keep that up.
 */
const DNS_RATE = 'rate over 120/minute burst 60 packets';
/**
 * Where the first label's length byte of a DNS query sits, in bits from the
 * start of the UDP header: 8 bytes of UDP header, 12 of DNS header.
 */
const DNS_FIRST_LABEL_BITS = (8 + 12) * 8;
/**
 * A UDP DNS query of this many bytes carries a name of 100+ characters:
 * 8 (UDP) + 12 (header) + name + 2 + 4 (type, class) + up to 23 of EDNS with
 * a cookie. Host names that long are rare; a tunnel's are all like that.
 */
const DNS_LONG_QUERY_BYTES = 140;
/** Element timeouts are capped so a stalled refresher fails closed within a day. */
const MAX_ELEMENT_TIMEOUT_S = 24 * 3600;

/** Ranges a restricted sandbox may not reach, in the order they are checked. */
export const PRIVATE: readonly string[] = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16'];
export const SPECIAL: ReadonlyArray<{ rule: RuleName; cidrs: readonly string[] }> = [
  /** Includes the cloud metadata address 169.254.169.254. */
  { rule: RULES.linklocal, cidrs: ['169.254.0.0/16'] },
  /** Carrier-grade NAT, also Tailscale's and many VPNs' address space. */
  { rule: RULES.cgnat, cidrs: ['100.64.0.0/10'] },
  { rule: RULES.loopback, cidrs: ['127.0.0.0/8'] },
  { rule: RULES.multicast, cidrs: ['224.0.0.0/4'] },
  /**
   * "This network", IETF protocol assignments, benchmarking (also used by
   * fake-IP proxies on the host), and class E with the limited broadcast.
   * The documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24) are
   * deliberately not here: nothing routes them, and tests use them as the
   * "internet".
   */
  { rule: RULES.reserved, cidrs: ['0.0.0.0/8', '192.0.0.0/24', '198.18.0.0/15', '240.0.0.0/4'] },
];

export interface RenderOptions {
  /** Current time (ms since the epoch); turns `expiresAt` into element timeouts. */
  now: number;
  /** Our tables' names (default `coi_guard` and `coi_guard_ingress`). */
  tables?: TableNames;
  /**
   * This guard's tag in the mark (default: the host guard's). Each table's
   * vmap sees every marked packet, so each guard needs a tag of its own
   * (see marks.ts).
   */
  tag?: number;
  /** The guard's pid, recorded in each table's comment so that a later guard can tell live tables from a dead guard's (guard-tables.ts). */
  owner?: number;
}

/** A sandbox after validation, with everything the script needs precomputed. */
interface Prepared {
  s: SandboxNetwork;
  key: string;
  gateway: string;
  /** 1-based id in the mark; 0 for sandboxes the inet table never sees (countsOnly). */
  id: number;
  nets: Cidr4[];
  dns: Array<{ ip: number; timeoutS?: number }>;
  ports: number[];
  /** `[[network.hosts]]` and the metadata endpoint when unblocked: addresses let through before any refusal. */
  exceptions: Array<{ ip: number; ports: number[] }>;
}

function invalid(message: string, details?: Record<string, unknown>): CoiError {
  return new CoiError(ErrorCodes.INVALID_INPUT, message, details ? { details } : {});
}

/** Code-point order: independent of locale and ICU, so the same on every host. */
function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function prepareSandbox(s: SandboxNetwork, now: number): Omit<Prepared, 'id'> {
  const key = sandboxKey(s.container);
  assertHostIface(s.hostIface, s.container);
  if (!NETWORK_MODES.includes(s.mode)) throw invalid(`sandbox ${JSON.stringify(s.container)} has an unknown network mode ${JSON.stringify(s.mode)}`);
  let gateway = '';
  if (s.mode !== 'open') {
    const gw = parseIpv4(s.gatewayV4);
    if (gw === undefined) throw invalid(`sandbox ${s.container}: gateway ${JSON.stringify(s.gatewayV4)} is not an IPv4 address`);
    gateway = formatIpv4(gw);
  }
  let nets: Cidr4[] = [];
  let dns: Prepared['dns'] = [];
  let ports: number[] = [];
  if (s.mode === 'allowlist') {
    nets = normaliseCidrs(
      s.allowCidrs.map((c) => {
        const parsed = parseCidr4(c);
        if (!parsed) throw invalid(`sandbox ${s.container}: ${JSON.stringify(c)} in the allowlist is not an IPv4 address or CIDR (IPv6 is always blocked)`, { container: s.container, cidr: c });
        return parsed;
      }),
    );
    // One element per address: the latest expiry wins, and no expiry beats any.
    const byIp = new Map<number, number | undefined>();
    for (const r of s.resolvedIps) {
      const ip = parseIpv4(r.ip);
      if (ip === undefined) throw invalid(`sandbox ${s.container}: resolved address ${JSON.stringify(r.ip)} is not IPv4`, { container: s.container, ip: r.ip });
      const prev = byIp.has(ip) ? byIp.get(ip) : null;
      const exp = r.expiresAt;
      if (prev === null) byIp.set(ip, exp);
      else if (prev !== undefined) byIp.set(ip, exp === undefined ? undefined : Math.max(prev, exp));
    }
    dns = [...byIp.entries()]
      .map(([ip, exp]) => {
        if (exp === undefined) return { ip };
        if (!Number.isFinite(exp)) throw invalid(`sandbox ${s.container}: expiresAt of ${formatIpv4(ip)} is not a time`);
        return { ip, timeoutS: Math.min(MAX_ELEMENT_TIMEOUT_S, Math.ceil((exp - now) / 1000)) };
      })
      // An address already expired is not written: nft refuses a zero timeout, and it is no longer allowed.
      .filter((e) => e.timeoutS === undefined || e.timeoutS > 0)
      .sort((a, b) => a.ip - b.ip);
    for (const p of s.allowedPorts ?? []) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`sandbox ${s.container}: ${p} is not a port number`);
    }
    ports = [...new Set(s.allowedPorts ?? [])].sort((a, b) => a - b);
  }
  return { s, key, gateway, nets, dns, ports, exceptions: s.mode === 'open' ? [] : exceptionsOf(s) };
}

const METADATA_IP = parseIpv4('169.254.169.254')!;

function validPorts(s: SandboxNetwork, list: readonly number[]): number[] {
  for (const p of list) if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`sandbox ${s.container}: ${p} is not a port number`);
  return [...new Set(list)].sort((a, b) => a - b);
}

/** One entry per address; an entry without ports (every port) absorbs any with ports. */
function exceptionsOf(s: SandboxNetwork): Prepared['exceptions'] {
  const byIp = new Map<number, number[] | undefined>();
  const add = (ip: number, ports: number[]) => {
    if (!byIp.has(ip)) byIp.set(ip, ports.length ? ports : undefined);
    else {
      const had = byIp.get(ip);
      byIp.set(ip, had && ports.length ? [...new Set([...had, ...ports])].sort((a, b) => a - b) : undefined);
    }
  };
  if (s.allowMetadata) add(METADATA_IP, []);
  for (const h of s.allowHosts ?? []) {
    const ip = parseIpv4(h.ip);
    if (ip === undefined) throw invalid(`sandbox ${s.container}: host address ${JSON.stringify(h.ip)} is not IPv4`, { container: s.container, ip: h.ip });
    add(ip, validPorts(s, h.ports));
  }
  return [...byIp.entries()].map(([ip, ports]) => ({ ip, ports: ports ?? [] })).sort((a, b) => a.ip - b.ip);
}

/** Accepts for the exceptions, placed before the refusals they override. */
function exceptionRules(p: Prepared): string[] {
  return p.exceptions.map((e) =>
    e.ports.length === 0 ? `ip daddr ${formatIpv4(e.ip)} accept` : `ip daddr ${formatIpv4(e.ip)} meta l4proto { tcp, udp } th dport { ${e.ports.join(', ')} } accept`,
  );
}

function validateUnique(prepared: ReadonlyArray<Omit<Prepared, 'id'>>, boots: readonly BootBlock[]): void {
  const keys = new Map<string, string>();
  const ifaces = new Map<string, string>();
  for (const p of prepared) {
    const other = keys.get(p.key);
    if (other !== undefined) throw invalid(`two sandboxes share the rules key ${p.key} (${JSON.stringify(other)} and ${JSON.stringify(p.s.container)})`);
    keys.set(p.key, p.s.container);
    const owner = ifaces.get(p.s.hostIface);
    if (owner !== undefined) throw invalid(`sandboxes ${JSON.stringify(owner)} and ${JSON.stringify(p.s.container)} both claim host interface ${p.s.hostIface}`);
    ifaces.set(p.s.hostIface, p.s.container);
  }
  for (const b of boots) {
    const owner = ifaces.get(b.hostIface);
    if (owner !== undefined && owner !== b.container) {
      throw invalid(`host interface ${b.hostIface} is blocked for ${JSON.stringify(b.container)} but belongs to ${JSON.stringify(owner)}`);
    }
  }
}

/** The per-table preamble that makes the script a full replacement. */
function resetLines(t: TableNames): string[] {
  return [
    `table ${FILTER_FAMILY} ${t.filter}`,
    `delete table ${FILTER_FAMILY} ${t.filter}`,
    `table ${INGRESS_FAMILY} ${t.ingress}`,
    `delete table ${INGRESS_FAMILY} ${t.ingress}`,
  ];
}

const HEADER = '#!/usr/sbin/nft -f\n# Written by the COI guard: the complete state of its own tables, applied as one transaction.\n';

/** A script that removes every table of ours and nothing else. */
export function renderRemoveAll(tables: TableNames = DEFAULT_TABLES): string {
  return `${HEADER}${resetLines(tables).join('\n')}\n`;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** Two rules: log (rate-limited, so it may not fire) and then refuse regardless. */
function refuse(key: string, match: string, rule: RuleName): string[] {
  return [
    `${match} limit name "${limitLog(key)}" log prefix "${logPrefix('reject', key, rule)}" level info`,
    `${match} goto refuse`,
  ];
}

function dropLogged(key: string, match: string, rule: RuleName): string[] {
  return [
    `${match} limit name "${limitLog(key)}" log prefix "${logPrefix('drop', key, rule)}" level info`,
    `${match} drop`,
  ];
}

function block(lines: string[], indent: string): string[] {
  return lines.map((l) => (l === '' ? '' : indent + l));
}

/** Sandboxes the inet table never sees: open ones, and those firewalld decides for (only counted here). */
function countsOnly(s: SandboxNetwork): boolean {
  return s.mode === 'open' || s.backend === 'firewalld';
}

function ingressChain(p: Prepared, mark: string): string[] {
  const { s, key } = p;
  const body: string[] = [
    `type filter hook ingress device "${s.hostIface}" priority ${INGRESS_PRIORITY}; policy accept;`,
    // First rule: identity for the parser (nft -j omits chain comments and devices) and the accounting counter.
    `counter comment "${COMMENT_SANDBOX} key=${key} iface=${s.hostIface} mode=${s.mode}${s.backend ? ` backend=${s.backend}` : ''}"`,
  ];
  if (!countsOnly(s)) {
    body.push(
      ...dropLogged(key, 'ether type { 8021q, 8021ad }', RULES.vlan),
      ...dropLogged(key, 'meta protocol ip6', RULES.ipv6),
      ...dropLogged(key, 'meta protocol != { ip, arp }', RULES.l2),
      // Keep other users' mark bits; ours say which sandbox this is.
      `meta protocol ip meta mark set meta mark and ${hex(~MARK_MASK >>> 0)} or ${mark}`,
    );
  }
  return [`chain ${chainIngress(key)} {`, ...block(body, '\t'), '}'];
}

function bootChain(b: BootBlock): string[] {
  const key = sandboxKey(b.container);
  return [
    `chain ${chainBoot(key)} {`,
    ...block(
      [
        `type filter hook ingress device "${b.hostIface}" priority ${INGRESS_PRIORITY}; policy drop;`,
        `counter comment "${COMMENT_BOOT} key=${key} iface=${b.hostIface}"`,
        // Dropped, not refused: a connect() that races the boot block then retries its SYN and
        // succeeds once the real rules are in, instead of failing for good.
        `limit name "${limitLog(key)}" log prefix "${logPrefix('drop', key, RULES.boot)}" level info`,
      ],
      '\t',
    ),
    '}',
  ];
}

/**
 * DNS queries shaped like a tunnel are let through but logged, for the
 * monitor: a long first label, a long name, a high rate. The payload itself
 * never reaches the kernel log (nf_log prints headers), so the tests are made
 * here, on the packet, by nft; to any resolver, since a restricted sandbox may
 * also ask a public one.
 */
function dnsNotes(key: string, gateway: string): string[] {
  const log = (rule: RuleName) => `limit name "${limitLog(key)}" log prefix "${logPrefix('log', key, rule)}" level info`;
  return [
    // A label length byte of 64+ is a compression pointer, which no query starts with.
    `udp dport 53 @th,${DNS_FIRST_LABEL_BITS},8 52-63 ${log(RULES.dnslabel)}`,
    `udp dport 53 udp length >= ${DNS_LONG_QUERY_BYTES} ${log(RULES.dnslong)}`,
    `udp dport 53 limit name "${limitDnsRate(key)}" ${log(RULES.dnsrate)}`,
    // The monitor reads the names from the gateway resolver's log: a query elsewhere is one it cannot judge by name.
    `meta l4proto { tcp, udp } th dport 53 ip daddr != ${gateway} ${log(RULES.dnsext)}`,
  ];
}

function restrictedChain(p: Prepared): string[] {
  const { key, gateway, s } = p;
  const body: string[] = [
    ...dnsNotes(key, gateway),
    // The sandbox's own resolver and DHCP server. The DHCP client's first packets go to the limited broadcast.
    `ip daddr ${gateway} meta l4proto { tcp, udp } th dport 53 accept`,
    `udp sport 68 udp dport 67 ip daddr { ${gateway}, 255.255.255.255 } accept`,
    // [[network.hosts]] and an unblocked metadata endpoint: reachable although private or link-local.
    ...exceptionRules(p),
  ];
  if (!s.allowLocalNetwork) body.push(...refuse(key, `ip daddr { ${PRIVATE.join(', ')} }`, RULES.private));
  for (const sp of SPECIAL) {
    const match = sp.cidrs.length === 1 ? `ip daddr ${sp.cidrs[0]}` : `ip daddr { ${sp.cidrs.join(', ')} }`;
    body.push(...refuse(key, match, sp.rule));
  }
  // Any other address of the host (a public one, say): its services are not "the internet".
  if (!s.allowLocalNetwork) body.push(...refuse(key, 'fib daddr type local', RULES.host));
  body.push('accept');
  return body;
}

function allowlistChain(p: Prepared): string[] {
  const { key, gateway } = p;
  const body: string[] = [
    `udp sport 68 udp dport 67 ip daddr { ${gateway}, 255.255.255.255 } accept`,
    // Before the allow sets: names were resolved on the host, and DNS to anyone (an allowed address
    // included) could carry a tunnel.
    ...refuse(key, 'meta l4proto { tcp, udp } th dport 53', RULES.dns),
    ...exceptionRules(p),
  ];
  for (const set of [setAllowNet(key), setAllowDns(key)]) {
    if (p.ports.length === 0) {
      body.push(`ip daddr @${set} accept`);
    } else {
      body.push(`ip daddr @${set} meta l4proto { tcp, udp } th dport { ${p.ports.join(', ')} } accept`);
      body.push(`ip daddr @${set} icmp type echo-request accept`);
    }
  }
  body.push(...refuse(key, 'meta nfproto ipv4', RULES.notallowed));
  return body;
}

function allowSets(p: Prepared): string[] {
  const out: string[] = [];
  const nets = p.nets.map(formatCidr4);
  out.push(`set ${setAllowNet(p.key)} {`, '\ttype ipv4_addr', '\tflags interval', '\tauto-merge');
  if (nets.length) out.push(`\telements = { ${nets.join(', ')} }`);
  out.push('}');
  const dns = p.dns.map((e) => (e.timeoutS === undefined ? formatIpv4(e.ip) : `${formatIpv4(e.ip)} timeout ${e.timeoutS}s`));
  out.push(`set ${setAllowDns(p.key)} {`, '\ttype ipv4_addr', '\tflags timeout');
  if (dns.length) out.push(`\telements = { ${dns.join(', ')} }`);
  out.push('}');
  return out;
}

/**
 * The nft script for the complete desired state. Throws INVALID_INPUT for
 * anything that cannot be rendered safely (bad interface names, addresses,
 * duplicates); never writes a partial script.
 */
export function renderRuleset(state: NetworkState, opts: RenderOptions): string {
  const base = state.sandboxes.map((s) => prepareSandbox(s, opts.now)).sort((a, b) => byString(a.key, b.key));
  // Boot blocks: one per container; the same container twice with the same interface is harmless.
  const bootByKey = new Map<string, BootBlock>();
  for (const b of state.blockAll) {
    const key = sandboxKey(b.container);
    assertHostIface(b.hostIface, b.container);
    const prev = bootByKey.get(key);
    if (prev && prev.hostIface !== b.hostIface) throw invalid(`container ${JSON.stringify(b.container)} is blocked on two interfaces (${prev.hostIface}, ${b.hostIface})`);
    bootByKey.set(key, b);
  }
  const boots = [...bootByKey.entries()].sort((a, b) => byString(a[0], b[0]));
  validateUnique(base, boots.map(([, b]) => b));

  const tables = opts.tables ?? DEFAULT_TABLES;
  const tag = opts.tag ?? HOST_TAG;
  if (!Number.isInteger(tag) || tag < 1 || tag > MAX_TAG || tag % 2 === 0) throw invalid(`mark tag ${tag} is not an odd number from 1 to ${MAX_TAG}`);
  let nextId = 1;
  const prepared: Prepared[] = base.map((p) => ({ ...p, id: countsOnly(p.s) ? 0 : nextId++ }));
  const filtered = prepared.filter((p) => p.id > 0);
  if (filtered.length > MAX_ID) throw invalid(`at most ${MAX_ID} sandboxes with filtered networks are supported, ${filtered.length} requested`);
  const mark = (p: Prepared) => hex(markOf(tag, p.id));

  const lines: string[] = [...resetLines(tables)];
  if (opts.owner !== undefined && !(Number.isInteger(opts.owner) && opts.owner > 0)) throw invalid(`owner pid ${opts.owner} is not a process id`);
  const owner = opts.owner !== undefined ? [`comment "${ownerComment(opts.owner)}"`] : [];

  if (prepared.length > 0 || boots.length > 0) {
    const t: string[] = [...owner];
    const limitKeys = [...new Set([...filtered.map((p) => p.key), ...boots.map(([k]) => k)])].sort(byString);
    for (const k of limitKeys) t.push(`limit ${limitLog(k)} { ${LOG_RATE} }`);
    for (const [, b] of boots) t.push('', ...bootChain(b));
    for (const p of prepared) t.push('', ...ingressChain(p, mark(p)));
    lines.push('', `table ${INGRESS_FAMILY} ${tables.ingress} {`, ...block(t, '\t'), '}');
  }

  if (filtered.length > 0) {
    const t: string[] = [...owner];
    for (const p of filtered) t.push(`limit ${limitLog(p.key)} { ${LOG_RATE} }`);
    for (const p of filtered.filter((x) => x.s.mode === 'restricted')) t.push(`limit ${limitDnsRate(p.key)} { ${DNS_RATE} }`);
    for (const p of filtered.filter((x) => x.s.mode === 'allowlist')) t.push('', ...allowSets(p));
    t.push('', 'chain refuse {', '\tmeta l4proto tcp reject with tcp reset', '\treject with icmpx admin-prohibited', '}');
    for (const p of filtered) {
      const body = p.s.mode === 'restricted' ? restrictedChain(p) : allowlistChain(p);
      t.push('', `# ${p.s.mode}, mark ${mark(p)}`, `chain ${chainSandbox(p.key)} {`, ...block(body, '\t'), '}');
    }
    const vmap = filtered.map((p) => `${mark(p)} : jump ${chainSandbox(p.key)}`).join(', ');
    for (const hook of ['forward', 'input'] as const) {
      t.push(
        '',
        `chain ${hook} {`,
        `\ttype filter hook ${hook} priority ${FILTER_PRIORITY}; policy accept;`,
        '\tct state established,related accept',
        `\tmeta mark and ${hex(MARK_MASK)} vmap { ${vmap} }`,
        '}',
      );
    }
    lines.push('', `table ${FILTER_FAMILY} ${tables.filter} {`, ...block(t, '\t'), '}');
  }

  return `${HEADER}${lines.join('\n')}\n`;
}
