/**
 * The sandboxes' bridge and, for tests and CI, the dead-end network: pure
 * builders of Incus config and of the host commands, unit-tested; setup.ts runs them.
 */
import { DEAD_END_HOSTS, SETUP_NAMES } from './names';

export interface Subnet {
  /** The host's address on the bridge, e.g. 10.213.0.1 */
  host: string;
  /** The dead-end gateway inside the test namespace, e.g. 10.213.0.2 */
  deadEndGateway: string;
  prefix: number;
  /** e.g. 10.213.0 */
  base: string;
}

export function subnetFromBase(base: string): Subnet {
  return { base, host: `${base}.1`, deadEndGateway: `${base}.2`, prefix: 24 };
}

/** Parses a bridge's ipv4.address ("10.213.0.1/24") back into our Subnet, if it is one of our /24s. */
export function subnetFromBridgeAddress(addr: string | undefined): Subnet | undefined {
  const m = /^(\d+\.\d+\.\d+)\.1\/24$/.exec(addr ?? '');
  return m ? subnetFromBase(m[1]!) : undefined;
}

function ipToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
}

export function cidrContains(cidr: string, ip: string): boolean {
  const [net, bitsText] = cidr.split('/');
  const bits = Number(bitsText ?? 32);
  if (!net || bits < 0 || bits > 32) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipToInt(net) & mask) === (ipToInt(ip) & mask);
}

/** True when two CIDRs share any address. */
export function cidrsOverlap(a: string, b: string): boolean {
  const [an, ab] = a.split('/');
  const [bn, bb] = b.split('/');
  const bits = Math.min(Number(ab ?? 32), Number(bb ?? 32));
  return cidrContains(`${an}/${bits}`, bn!) || cidrContains(`${bn}/${bits}`, an!);
}

/**
 * The first 10.x.0.0/24 from our candidates that overlaps none of the host's
 * routes, nor the test hosts' addresses. `incus admin init --minimal` cannot
 * choose one on some hosts, so we do.
 */
export function pickSubnet(hostRoutes: string[]): Subnet {
  const taken = [...hostRoutes.filter((r) => r !== 'default' && r !== '0.0.0.0/0'), `${DEAD_END_HOSTS.private}/32`];
  for (let second = 213; second < 250; second++) {
    const cidr = `10.${second}.0.0/24`;
    if (!taken.some((r) => cidrsOverlap(r.includes('/') ? r : `${r}/32`, cidr))) return subnetFromBase(`10.${second}.0`);
  }
  throw new Error('no free 10.x.0.0/24 subnet for the sandbox bridge');
}

/**
 * Where the bridge's dnsmasq writes the names it is asked for: inside Incus's
 * own directory of that network, which Incus creates before it starts
 * dnsmasq. A directory of ours could be missing at that moment (a fresh boot,
 * a clean-up), and dnsmasq refuses to start without its log file: the bridge,
 * and every sandbox's DHCP and DNS with it, would be down.
 */
export function dnsQueryLogPath(bridge: string = SETUP_NAMES.bridge, incusDir = '/var/lib/incus'): string {
  return `${incusDir}/networks/${bridge}/coi-dns-queries.log`;
}

/**
 * dnsmasq lines that make it log every query with its source address and port
 * (`extra`), to a file the guard's monitor tails: the names a sandbox looks up
 * are read on the host, never inside the container (see
 * guard/monitor/dns-feed.ts for why this feed and not another).
 */
export function dnsQueryLogLines(logPath: string): string[] {
  return ['log-queries=extra', `log-facility=${logPath}`];
}

/**
 * Bridge config. Normal: NAT, so agents reach the internet on a user's machine.
 * Dead end (CI, tests): no NAT, DHCP hands out the test namespace as the router,
 * and dnsmasq forwards no query upstream — nothing a container sends can leave
 * the machine. Routing stays on because br_netfilter would otherwise make
 * Incus's own rules refuse bridged traffic to the test hosts (testbed §3); the
 * forward-drop table below keeps routed traffic in. Both log DNS queries.
 */
export function bridgeConfig(subnet: Subnet, deadEnd: boolean, queryLog: string = dnsQueryLogPath()): Record<string, string> {
  const common = {
    'ipv4.address': `${subnet.host}/${subnet.prefix}`,
    'ipv4.dhcp': 'true',
    'ipv6.address': 'none',
    'user.coi.managed': 'true',
  };
  const log = dnsQueryLogLines(queryLog);
  if (!deadEnd) return { ...common, 'ipv4.nat': 'true', 'raw.dnsmasq': log.join('\n'), 'user.coi.mode': 'nat' };
  return {
    ...common,
    'ipv4.nat': 'false',
    'ipv4.routing': 'true',
    'ipv4.dhcp.ranges': `${subnet.base}.100-${subnet.base}.250`,
    'raw.dnsmasq': [`dhcp-option=option:router,${subnet.deadEndGateway}`, 'no-resolv', ...log].join('\n'),
    'user.coi.mode': 'dead-end',
  };
}

/** The keys of `want` whose value differs in `have` (what an idempotent update must change). */
export function configDiff(have: Record<string, string>, want: Record<string, string>): Record<string, string> {
  const diff: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) diff[k] = v;
  return diff;
}

/**
 * nft script that drops anything from the bridge routed to another interface.
 * Recreated whole in one transaction, so running it twice changes nothing.
 */
export function deadEndForwardDrop(bridge: string = SETUP_NAMES.bridge): string {
  const t = SETUP_NAMES.deadEndTable;
  return [
    `table inet ${t}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `  comment "coi dead-end network: sandboxes on ${bridge} reach nothing beyond it"`,
    '  chain forward {',
    '    type filter hook forward priority -300; policy accept;',
    `    iifname "${bridge}" oifname != "${bridge}" counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Argument lists for `ip`, in order; each is safe to re-run (set-up ignores "exists" where noted). */
export function deadEndNamespaceCommands(subnet: Subnet, present: { namespace: boolean; veth: boolean }): string[][] {
  const ns = SETUP_NAMES.deadEndNamespace;
  const veth = SETUP_NAMES.deadEndVeth;
  const cmds: string[][] = [];
  if (!present.namespace) cmds.push(['netns', 'add', ns]);
  if (!present.veth) cmds.push(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  cmds.push(['link', 'set', veth, 'master', SETUP_NAMES.bridge, 'up']);
  cmds.push(['-n', ns, 'link', 'set', 'lo', 'up']);
  cmds.push(['-n', ns, 'link', 'set', 'eth0', 'up']);
  cmds.push(['-n', ns, 'addr', 'replace', `${subnet.deadEndGateway}/${subnet.prefix}`, 'dev', 'eth0']);
  for (const addr of Object.values(DEAD_END_HOSTS)) cmds.push(['-n', ns, 'addr', 'replace', `${addr}/32`, 'dev', 'lo']);
  return cmds;
}
