/**
 * `[network] backend = "firewalld"`, pure: a sandbox's restricted mode as
 * firewalld objects instead of the guard's own nft tables, for hosts whose
 * policy is that firewalld owns every rule.
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
 * Per sandbox, two permanent objects:
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
 * `coi clean --orphans` of one guard never takes another's.
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

/** The `short` description of a sandbox's objects: says whose they are. */
export function ownerDescription(container: string, scope: string): string {
  return `coi sandbox ${container} scope=${scope}`;
}

/** The container a `short` description names, when it is of this scope; undefined otherwise. */
export function ownerOf(short: string, scope: string): string | undefined {
  const m = /^coi sandbox (\S+) scope=(\S*)$/.exec(short.trim());
  return m && m[2] === scope ? m[1] : undefined;
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

/** Only restricted mode has a firewalld form so far; the others are refused rather than approximated. */
function assertSupported(sb: SandboxNetwork): void {
  if (sb.mode !== 'restricted') throw invalid(`sandbox ${sb.container}: network mode ${sb.mode} is not available with backend = "firewalld" (only restricted is)`);
}

/** The zone of one sandbox: its MAC, and what it may send to the host itself. */
export function sandboxZoneXml(sb: SandboxNetwork, mac: string, scope: string): string {
  assertSupported(sb);
  const m = mac.toLowerCase();
  if (!MAC.test(m)) throw invalid(`sandbox ${sb.container}: ${JSON.stringify(mac)} is not a MAC address`);
  const gw = ipv4(sb.gatewayV4, 'gateway');
  const lines = [
    '<?xml version="1.0" encoding="utf-8"?>',
    '<zone target="default">',
    `  <short>${esc(ownerDescription(sb.container, scope))}</short>`,
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
export function sandboxPolicyXml(sb: SandboxNetwork, scope: string): string {
  assertSupported(sb);
  const { zone } = firewalldNames(sb.container, scope);
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
    '<?xml version="1.0" encoding="utf-8"?>',
    `<policy target="ACCEPT" priority="${POLICY_PRIORITY}">`,
    `  <short>${esc(ownerDescription(sb.container, scope))}</short>`,
    `  <ingress-zone name="${zone}"/>`,
    '  <egress-zone name="ANY"/>',
    ...exceptions.map((r) => `  ${r}`),
    ...blocked.map((r) => `  ${r}`),
    `  <rule priority="${PRIO_REJECT}" family="ipv6"><reject/></rule>`,
    '</policy>',
    '',
  ];
  return lines.join('\n');
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
