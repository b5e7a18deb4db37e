/**
 * The desired network state, computed from Incus alone: which instances are
 * sandboxes this guard fences, on which host-side interface, with which
 * settings. Pure: the controller feeds it the instances, the bridges' gateway
 * addresses and the addresses resolved for allowlists.
 *
 * Every managed instance that exists gets rules, whatever its state: a stopped
 * persistent sandbox started later with the `incus` CLI is fenced from its first
 * packet, because its chains are bound to its interface name already.
 *
 * What cannot be fenced is never silently left open. An instance whose label
 * does not parse, or whose bridge has no known gateway, gets a boot block (all
 * traffic dropped) and a problem; one whose interface cannot be named (no
 * `host_name`, several NICs) gets a problem, and the guard refuses to secure it,
 * so the launch that asked stops before starting it.
 */
import type { Remedy } from '../../errors';
import { toCoiError } from '../../errors';
import type { Devices, InstanceFull } from '../../incus/types';
import { LABELS } from '../../sandbox/labels';
import { NetworkLabel, parseNetworkLabel } from '../../sandbox/network-label';
import { antiSpoofingProblem, sandboxObjects, SandboxFirewalldObjects } from './firewalld-policy';
import { formatIpv4, parseIpv4 } from './ipv4';
import type { BootBlock, NetworkState, ResolvedIp, SandboxNetwork } from './types';

const IFACE = /^[A-Za-z0-9_.-]{1,15}$/;

export interface ManagedSandbox {
  container: string;
  /** The NIC's fixed host-side name, when it has one. */
  hostIface?: string;
  /** The Incus network (or unmanaged parent bridge) the NIC is attached to. */
  bridge?: string;
  /** The parsed label; undefined when it is invalid (see `labelError`). */
  label?: NetworkLabel;
  labelError?: string;
  /** No label at all (made by an older COI): the defaults apply, restricted. */
  labelMissing: boolean;
  /** Why the sandbox's interface cannot be fenced; undefined when it can. */
  unfenceable?: string;
  /** No NIC at all: nothing to fence. */
  noNetwork: boolean;
  /** The NIC as Incus expands it, and its MAC (`volatile.<nic>.hwaddr`): what firewalld matches. */
  nic?: Readonly<Record<string, string>>;
  hwaddr?: string;
}

export interface Problem {
  container: string;
  problem: string;
  /** What fixes it, when the host can (start firewalld, say). */
  remedy?: Remedy;
}

/** Is this instance one of ours, for a guard of this scope? */
export function inScope(inst: Pick<InstanceFull, 'config'>, scope: string): boolean {
  const c = inst.config ?? {};
  return c[LABELS.managed] === 'true' && (c[LABELS.guardScope] ?? '') === scope;
}

function nics(devices: Devices): Array<[string, Record<string, string>]> {
  return Object.entries(devices).filter(([, d]) => d.type === 'nic');
}

/** What the guard needs of one instance, or undefined when it is not ours (not managed, or another guard's scope). */
export function managedSandboxOf(inst: InstanceFull, scope: string): ManagedSandbox | undefined {
  if (!inScope(inst, scope)) return undefined;
  const parsed = parseNetworkLabel(inst.config[LABELS.network]);
  const sb: ManagedSandbox = { container: inst.name, labelMissing: parsed.ok ? parsed.missing : false, noNetwork: false };
  if (parsed.ok) sb.label = parsed.label;
  else sb.labelError = parsed.error;
  const list = nics(inst.expanded_devices ?? inst.devices ?? {});
  if (list.length === 0) {
    sb.noNetwork = true;
    return sb;
  }
  if (list.length > 1) {
    sb.unfenceable = `it has ${list.length} network interfaces (${list.map(([n]) => n).join(', ')}); a sandbox may have one`;
    return sb;
  }
  const [devName, nic] = list[0]!;
  sb.nic = nic;
  const hwaddr = inst.config[`volatile.${devName}.hwaddr`] ?? nic.hwaddr;
  if (hwaddr) sb.hwaddr = hwaddr;
  const hostName = nic.host_name;
  if (!hostName) sb.unfenceable = `its interface ${devName} has no fixed host-side name (host_name), so no rule can be bound to it`;
  else if (!IFACE.test(hostName)) sb.unfenceable = `its interface ${devName} has an invalid host_name ${JSON.stringify(hostName)}`;
  else sb.hostIface = hostName;
  const bridge = nic.network || nic.parent;
  if (bridge) sb.bridge = bridge;
  return sb;
}

/** "10.213.0.1/24" → "10.213.0.1"; undefined when not an IPv4 address. */
export function gatewayOf(ipv4Address: string | undefined): string | undefined {
  if (!ipv4Address) return undefined;
  const ip = parseIpv4(ipv4Address.split('/')[0] ?? '');
  return ip === undefined ? undefined : formatIpv4(ip);
}

export interface DesiredContext {
  /** Bridge name → the host's IPv4 address on it (the sandboxes' DNS and DHCP server). */
  gateways: ReadonlyMap<string, string>;
  /** Container → the addresses its allowlist's names resolved to. */
  resolved: ReadonlyMap<string, readonly ResolvedIp[]>;
  /**
   * `backend = "firewalld"` sandboxes: those whose zone and policy are live
   * (the guard's tables then only count them), and why others' cannot be.
   * The rest of them stay boot-blocked. Absent = no firewalld objects are live.
   */
  firewalld?: { live: ReadonlySet<string>; problems: ReadonlyMap<string, Omit<Problem, 'container'>> };
}

export interface Desired {
  state: NetworkState;
  /** Containers that have sandbox rules (not merely a boot block). */
  fenced: string[];
  /** Containers whose traffic is blocked entirely, and why. */
  blocked: Problem[];
  /** Containers that have no rules at all although they have a NIC. */
  unfenced: Problem[];
}

export function desiredState(sandboxes: readonly ManagedSandbox[], ctx: DesiredContext): Desired {
  const sorted = [...sandboxes].sort((a, b) => (a.container < b.container ? -1 : a.container > b.container ? 1 : 0));
  const out: Desired = { state: { sandboxes: [], blockAll: [] }, fenced: [], blocked: [], unfenced: [] };
  const ifaceOwner = new Map<string, string>();
  for (const sb of sorted) {
    if (sb.noNetwork) continue;
    if (sb.unfenceable || !sb.hostIface) {
      out.unfenced.push({ container: sb.container, problem: sb.unfenceable ?? 'no interface name' });
      continue;
    }
    const owner = ifaceOwner.get(sb.hostIface);
    if (owner !== undefined) {
      out.unfenced.push({ container: sb.container, problem: `its host-side interface ${sb.hostIface} is claimed by ${owner} too` });
      continue;
    }
    ifaceOwner.set(sb.hostIface, sb.container);
    const block = (problem: string, remedy?: Remedy) => {
      const b: BootBlock = { container: sb.container, hostIface: sb.hostIface! };
      out.state.blockAll.push(b);
      out.blocked.push({ container: sb.container, problem, ...(remedy ? { remedy } : {}) });
    };
    if (!sb.label) {
      block(sb.labelError ?? 'no network settings');
      continue;
    }
    const net = sandboxNetworkOf(sb, ctx.gateways, ctx.resolved);
    if (typeof net === 'string') {
      block(net);
      continue;
    }
    if (sb.label.backend === 'firewalld') {
      // Blocked by the guard until firewalld's own objects for it are live: never a gap between the two.
      const p = ctx.firewalld?.problems.get(sb.container);
      if (p) {
        block(p.problem, p.remedy);
        continue;
      }
      if (!ctx.firewalld?.live.has(sb.container)) {
        block('its firewalld zone and policy are not in place yet');
        continue;
      }
      net.backend = 'firewalld';
    }
    out.state.sandboxes.push(net);
    out.fenced.push(sb.container);
  }
  return out;
}

/** The rules input of one fenceable sandbox with a label, or why it has none. */
function sandboxNetworkOf(sb: ManagedSandbox, gateways: ReadonlyMap<string, string>, resolved: ReadonlyMap<string, readonly ResolvedIp[]>): SandboxNetwork | string {
  const label = sb.label!;
  let gateway = '';
  if (label.mode !== 'open') {
    const gw = sb.bridge ? gateways.get(sb.bridge) : undefined;
    if (!gw) return sb.bridge ? `the gateway address of its network ${sb.bridge} is unknown` : 'its interface is attached to no known network';
    gateway = gw;
  }
  const net: SandboxNetwork = {
    container: sb.container,
    hostIface: sb.hostIface!,
    mode: label.mode,
    gatewayV4: gateway,
    allowLocalNetwork: label.mode === 'restricted' && label.allowLocal,
    allowCidrs: label.mode === 'allowlist' ? [...label.cidrs] : [],
    resolvedIps: label.mode === 'allowlist' ? [...(resolved.get(sb.container) ?? [])] : [],
  };
  if (label.mode === 'allowlist' && label.ports.length > 0) net.allowedPorts = [...label.ports];
  if (label.metadata && label.mode !== 'open') net.allowMetadata = true;
  if (label.hosts && label.mode !== 'open') net.allowHosts = label.hosts.map((h) => ({ ip: h.ip, ports: [...h.ports] }));
  return net;
}

export interface FirewalldDesired {
  /** Container → its zone and policy as they should be. */
  objects: Map<string, SandboxFirewalldObjects>;
  /** Container → why it cannot have any (it stays blocked). */
  problems: Map<string, string>;
}

/**
 * The firewalld objects of every `backend = "firewalld"` sandbox this guard
 * fences, from the instance listing alone. Sandboxes that cannot be fenced at
 * all (desiredState says why) are left out: they are never started.
 */
export function desiredFirewalld(sandboxes: readonly ManagedSandbox[], gateways: ReadonlyMap<string, string>, scope: string): FirewalldDesired {
  const out: FirewalldDesired = { objects: new Map(), problems: new Map() };
  for (const sb of sandboxes) {
    if (sb.label?.backend !== 'firewalld' || sb.noNetwork || sb.unfenceable || !sb.hostIface) continue;
    const net = sandboxNetworkOf(sb, gateways, new Map());
    if (typeof net === 'string') continue; // blocked by desiredState for this reason already
    const spoof = antiSpoofingProblem(sb.nic ?? {}, sb.hwaddr);
    if (spoof) {
      out.problems.set(sb.container, `backend = "firewalld" matches a sandbox by its MAC, but ${spoof}`);
      continue;
    }
    try {
      out.objects.set(sb.container, sandboxObjects(net, sb.hwaddr!, scope));
    } catch (e) {
      out.problems.set(sb.container, toCoiError(e).message);
    }
  }
  return out;
}
