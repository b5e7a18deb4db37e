/**
 * `[network] backend = "firewalld"`, pure: a sandbox's restricted (or open)
 * mode as firewalld objects instead of the guard's own nft tables, for hosts
 * whose policy is that firewalld owns every rule; and what to change when the
 * installed objects differ from the desired ones (diffFirewalld, planSync).
 * Allowlist mode has no firewalld form yet and is refused.
 *
 * How a sandbox is recognised. firewalld assigns traffic to a zone by the
 * input interface or by the source (address, MAC, ipset). Binding the
 * sandbox's host-side veth to a zone does not work: with br_netfilter, frames
 * bridged from the veth reach the inet hooks with `iifname` = the bridge, so
 * every sandbox falls into the bridge's zone. A source address can be changed
 * by root in the container. What is left is the source MAC, which firewalld
 * matches (`ether saddr`) in its forward and input dispatch, made unforgeable
 * by Incus: `security.mac_filtering=true` on the NIC drops every frame whose
 * source MAC is not the NIC's `volatile.<nic>.hwaddr` (and
 * `security.ipv4_filtering` / `ipv6_filtering` drop forged addresses as well).
 * The guard refuses a sandbox whose NIC lacks those settings
 * (`antiSpoofingProblem`), so a rule is never keyed on something root inside
 * can change.
 *
 * Per sandbox, two permanent objects (open: both accept everything):
 *  - zone `coiz-<hash>`: source = the NIC's MAC. It decides what reaches the
 *    host itself (firewalld's HOST): DHCP, and DNS to the gateway, nothing
 *    else (the zone's `default` target rejects the rest).
 *  - policy `coip-<hash>`: ingress = that zone, egress = ANY (every zone but
 *    HOST): rejects the ranges restricted mode blocks (the same list as the
 *    nft renderer) and all IPv6, then target ACCEPT for the rest. Rules carry
 *    priorities so the exceptions (metadata, `[[network.hosts]]`) come before
 *    the rejects: without them firewalld orders rich rules by action (deny
 *    before allow).
 * firewalld creates zones and policies only in the permanent configuration;
 * a `--reload` makes them live, and also makes them survive later reloads.
 *
 * Names: zones may have 17 characters and policies 18 (firewalld's chain name
 * limits), a zone and a policy may not share a name, and the `short`
 * description says which guard scope and container the objects belong to, so
 * `coi clean --orphans` of one guard never takes another's, and a hash of
 * their content, so a listing alone says whether they are current.
 */
import { createHash } from 'node:crypto';
import { CoiError, ErrorCodes } from '../../errors';
import type { FirewallCmd } from './firewalld';
import { formatCidr4, parseCidr4, parseIpv4 } from './ipv4';
import { PRIVATE, SPECIAL } from './render';
import type { SandboxNetwork } from './types';

export interface FirewalldNames {
  zone: string;
  policy: string;
}

/** Priorities of the rich rules: lower runs first. */
const PRIO_EXCEPTION = -30;
const PRIO_REJECT = -20;
/** Before firewalld's own policies at the default priority (-1), after anything an administrator put lower. */
const POLICY_PRIORITY = -100;

const NAME = /^coi[pz]-[0-9a-f]{11}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function hash(scope: string, container: string): string {
  return createHash('sha256').update(`${scope}\0${container}`, 'utf8').digest('hex').slice(0, 11);
}

export function firewalldNames(container: string, scope: string): FirewalldNames {
  const h = hash(scope, container);
  return { zone: `coiz-${h}`, policy: `coip-${h}` };
}

/** Is this zone or policy name one the guard makes? (Others are never touched.) */
export function isCoiObjectName(name: string): boolean {
  return NAME.test(name);
}

/**
 * The `short` description of a sandbox's objects: says whose they are and,
 * with `version` (a hash of their content), whether they are the current ones,
 * so a guard can tell from a listing alone what needs replacing.
 */
export function ownerDescription(container: string, scope: string, version?: string): string {
  return `coi sandbox ${container} scope=${scope}${version ? ` v=${version}` : ''}`;
}

/** The container (and content version) a `short` description names, when it is of this scope; undefined otherwise. */
export function ownerOf(short: string, scope: string): { container: string; version?: string } | undefined {
  const m = /^coi sandbox (\S+) scope=(\S*?)(?: v=([0-9a-f]{12}))?$/.exec(short.trim());
  if (!m || m[2] !== scope) return undefined;
  return { container: m[1]!, ...(m[3] ? { version: m[3] } : {}) };
}

/**
 * Why this NIC cannot be matched safely by its MAC, or undefined when it can.
 * `nic` is the device as Incus expands it; `hwaddr` its `volatile.<nic>.hwaddr`
 * (or `hwaddr` of the device), set by Incus when the instance is created.
 */
export function antiSpoofingProblem(nic: Readonly<Record<string, string>>, hwaddr: string | undefined): string | undefined {
  const missing = ['security.mac_filtering', 'security.ipv4_filtering', 'security.ipv6_filtering'].filter((k) => nic[k] !== 'true');
  if (missing.length > 0) return `its interface lacks ${missing.map((k) => `${k}=true`).join(', ')}, so root inside could change the MAC or address that firewalld matches`;
  if (!hwaddr || !MAC.test(hwaddr.toLowerCase())) return `its interface has no MAC address yet (${JSON.stringify(hwaddr ?? '')})`;
  return undefined;
}

function invalid(message: string): CoiError {
  return new CoiError(ErrorCodes.INVALID_INPUT, message);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function ipv4(ip: string, what: string): string {
  if (parseIpv4(ip) === undefined) throw invalid(`${what} ${JSON.stringify(ip)} is not an IPv4 address`);
  return ip;
}

/** Rich rules that let an address through (all of it, or these TCP and UDP ports). */
function acceptRules(ip: string, ports: readonly number[]): string[] {
  const dest = `<destination address="${ipv4(ip, 'allowed host')}"/>`;
  if (ports.length === 0) return [`<rule priority="${PRIO_EXCEPTION}" family="ipv4">${dest}<accept/></rule>`];
  return ports.flatMap((p) => {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw invalid(`port ${p} is not between 1 and 65535`);
    return ['tcp', 'udp'].map((proto) => `<rule priority="${PRIO_EXCEPTION}" family="ipv4">${dest}<port port="${p}" protocol="${proto}"/><accept/></rule>`);
  });
}

/** restricted and open have a firewalld form; allowlist is refused rather than approximated. */
function assertSupported(sb: SandboxNetwork): void {
  if (sb.mode !== 'restricted' && sb.mode !== 'open') throw invalid(`sandbox ${sb.container}: network mode ${sb.mode} is not available with backend = "firewalld" (restricted and open are)`);
}

/** The zone of one sandbox: its MAC, and what it may send to the host itself. */
export function sandboxZoneXml(sb: SandboxNetwork, mac: string, scope: string, version?: string): string {
  assertSupported(sb);
  const m = mac.toLowerCase();
  if (!MAC.test(m)) throw invalid(`sandbox ${sb.container}: ${JSON.stringify(mac)} is not a MAC address`);
  const short = `  <short>${esc(ownerDescription(sb.container, scope, version))}</short>`;
  if (sb.mode === 'open') {
    // Nothing refused, the host included, as with the nft backend; the zone still says so explicitly,
    // whatever zone the bridge is in.
    return ['<?xml version="1.0" encoding="utf-8"?>', '<zone target="ACCEPT">', short, `  <source address="${m}"/>`, '</zone>', ''].join('\n');
  }
  const gw = ipv4(sb.gatewayV4, 'gateway');
  const lines = [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<zone target="default">',
    short,
    `  <source address="${m}"/>`,
    // DHCP comes from 0.0.0.0 to the broadcast address, so it cannot be tied to the gateway.
    '  <service name="dhcp"/>',
    `  <rule family="ipv4"><destination address="${gw}"/><service name="dns"/><accept/></rule>`,
    // allow_local_network_access: the host's own addresses too, as with the nft backend.
    ...(sb.allowLocalNetwork ? ['  <rule family="ipv4"><accept/></rule>'] : []),
    '</zone>',
    '',
  ];
  return lines.join('\n');
}

/** The policy of one sandbox: what it may send anywhere but the host. */
export function sandboxPolicyXml(sb: SandboxNetwork, scope: string, version?: string): string {
  assertSupported(sb);
  const { zone } = firewalldNames(sb.container, scope);
  const head = [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<policy target="ACCEPT" priority="${POLICY_PRIORITY}">`,
    `  <short>${esc(ownerDescription(sb.container, scope, version))}</short>`,
    `  <ingress-zone name="${zone}"/>`,
    '  <egress-zone name="ANY"/>',
  ];
  if (sb.mode === 'open') return [...head, '</policy>', ''].join('\n');
  const exceptions = [
    ...(sb.allowMetadata ? acceptRules('169.254.169.254', []) : []),
    ...(sb.allowHosts ?? []).flatMap((h) => acceptRules(h.ip, h.ports)),
  ];
  const blocked = [...(sb.allowLocalNetwork ? [] : PRIVATE), ...SPECIAL.flatMap((s) => s.cidrs)].map((c) => {
    const cidr = parseCidr4(c);
    if (!cidr) throw new CoiError(ErrorCodes.INTERNAL, `blocked range ${c} does not parse`);
    return `<rule priority="${PRIO_REJECT}" family="ipv4"><destination address="${formatCidr4(cidr)}"/><reject type="icmp-admin-prohibited"/></rule>`;
  });
  const lines = [
    ...head,
    ...exceptions.map((r) => `  ${r}`),
    ...blocked.map((r) => `  ${r}`),
    `  <rule priority="${PRIO_REJECT}" family="ipv6"><reject/></rule>`,
    '</policy>',
    '',
  ];
  return lines.join('\n');
}

/** A sandbox's zone and policy as firewalld should have them. */
export interface SandboxFirewalldObjects {
  names: FirewalldNames;
  zoneXml: string;
  policyXml: string;
  /** A hash of the content, recorded in both objects' `short`. */
  version: string;
}

/** Both objects of a sandbox, each carrying the version of the pair. */
export function sandboxObjects(sb: SandboxNetwork, mac: string, scope: string): SandboxFirewalldObjects {
  const version = createHash('sha256')
    .update(`${sandboxZoneXml(sb, mac, scope)}\0${sandboxPolicyXml(sb, scope)}`, 'utf8')
    .digest('hex')
    .slice(0, 12);
  return { names: firewalldNames(sb.container, scope), zoneXml: sandboxZoneXml(sb, mac, scope, version), policyXml: sandboxPolicyXml(sb, scope, version), version };
}

/** What firewalld's permanent configuration holds of one sandbox (this guard's scope). */
export interface InstalledFirewalld {
  names: FirewalldNames;
  zone: boolean;
  policy: boolean;
  /** When zone and policy are both there with the same version. */
  version?: string;
}

/**
 * Which sandboxes need their objects (re)installed, and which objects go:
 * those of containers that should have none (deleted, behind our back too,
 * or no longer with this backend). Pure.
 */
export function diffFirewalld(
  installed: ReadonlyMap<string, InstalledFirewalld>,
  desired: ReadonlyMap<string, Pick<SandboxFirewalldObjects, 'version'>>,
): { install: string[]; remove: string[] } {
  const install = [...desired.entries()].filter(([c, d]) => installed.get(c)?.version !== d.version).map(([c]) => c);
  const remove = [...installed.keys()].filter((c) => !desired.has(c));
  return { install: install.sort(), remove: remove.sort() };
}

/** The containers whose installed objects are the desired ones. */
export function liveFirewalld(installed: ReadonlyMap<string, InstalledFirewalld>, desired: ReadonlyMap<string, Pick<SandboxFirewalldObjects, 'version'>>): Set<string> {
  return new Set([...desired.entries()].filter(([c, d]) => installed.get(c)?.version === d.version).map(([c]) => c));
}

/**
 * One batch of firewall-cmd calls for a diff, with ONE reload at the end (each
 * reload costs seconds): deletions only of objects that exist (policy before
 * zone: a zone a policy names cannot be deleted), then the new objects from
 * their files.
 */
export function planSync(
  installed: ReadonlyMap<string, InstalledFirewalld>,
  install: ReadonlyArray<{ container: string; names: FirewalldNames; zoneFile: string; policyFile: string }>,
  remove: readonly string[],
): FirewallCmd[] {
  const out: FirewallCmd[] = [];
  const del = (c: string) => {
    const i = installed.get(c);
    if (i?.policy) out.push(['--permanent', `--delete-policy=${i.names.policy}`]);
    if (i?.zone) out.push(['--permanent', `--delete-zone=${i.names.zone}`]);
  };
  for (const c of remove) del(c);
  for (const x of install) {
    del(x.container);
    out.push(['--permanent', `--new-zone-from-file=${x.zoneFile}`, `--name=${x.names.zone}`]);
    out.push(['--permanent', `--new-policy-from-file=${x.policyFile}`, `--name=${x.names.policy}`]);
  }
  if (out.length > 0) out.push(['--reload']);
  return out;
}

/**
 * firewall-cmd calls that replace a sandbox's objects with the ones in these
 * files and make them live. The deletions fail harmlessly when there is
 * nothing to delete (INVALID_ZONE / INVALID_POLICY); the runner tolerates that.
 */
export function planInstall(names: FirewalldNames, zoneFile: string, policyFile: string): FirewallCmd[] {
  return [
    ...planDelete(names),
    ['--permanent', `--new-zone-from-file=${zoneFile}`, `--name=${names.zone}`],
    ['--permanent', `--new-policy-from-file=${policyFile}`, `--name=${names.policy}`],
    ['--reload'],
  ];
}

/** The policy goes first: a zone a policy still names cannot be deleted. */
function planDelete(names: FirewalldNames): FirewallCmd[] {
  return [
    ['--permanent', `--delete-policy=${names.policy}`],
    ['--permanent', `--delete-zone=${names.zone}`],
  ];
}

export function planRemove(names: FirewalldNames): FirewallCmd[] {
  return [...planDelete(names), ['--reload']];
}

/** Is this a failure of a deletion that found nothing to delete? */
export function isNothingToDelete(args: readonly string[], output: string): boolean {
  return args.some((a) => a.startsWith('--delete-')) && /INVALID_(ZONE|POLICY)/.test(output);
}
