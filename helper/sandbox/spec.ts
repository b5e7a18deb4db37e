/**
 * The Incus instance a sandbox is: pure, from what was decided about it, so
 * every security-relevant key is visible in one place and unit-tested.
 */
import { encodePolicy, MonitorPolicy } from '../guard/monitor/policy';
import type { Devices, InstanceCreate } from '../incus/types';
import type { IdmapMode } from './idmap';
import { LABELS, RuntimeLabel, SandboxKind } from './labels';
import { hostVethName } from './naming';
import { encodeNetworkLabel, NetworkLabel } from './network-label';
import { protectedDevices } from './protected';

export const WORKSPACE_MOUNT = '/workspace';

export interface SandboxSpecInput {
  name: string;
  image: string;
  pool: string;
  bridge: string;
  workspace: string;
  slot: number;
  kind: SandboxKind;
  tool: string;
  persistent: boolean;
  session: string;
  profile: string;
  ownerUid: number;
  ownerHome: string;
  launcherPid: number;
  idmap: IdmapMode;
  protectedPaths: string[];
  /** Extra host directories, already vetted (trust, existence). */
  mounts: { host: string; container: string; readonly: boolean }[];
  /** IANA name of the host's zone, passed as TZ. */
  timezone?: string;
  /** Docker inside the sandbox needs nesting and syscall interception. */
  nesting: boolean;
  /** SSH agent socket on the host to forward through a proxy device. */
  sshAgentSocket?: string;
  limits?: { config: Record<string, string>; rootDevice: Record<string, string> };
  runtime?: RuntimeLabel;
  /** What the guard enforces; it reads this label back from Incus, never from a client. */
  network: NetworkLabel;
  /** Set only for a test's own guard (COI_GUARD_SCOPE). */
  guardScope?: string;
  /** Recorded for the guard, which starts watching when the instance runs. */
  monitor?: MonitorPolicy;
  /** The guard's socket when it is not the default one: that guard, and only it, watches the sandbox. */
  guardSocket?: string;
  /** Extra home paths saved with the session ([tool.custom] state_dirs). */
  stateDirs?: string[];
  now: Date;
}

export function buildInstanceSpec(s: SandboxSpecInput): InstanceCreate {
  const shift = s.idmap.kind === 'shift';
  const devices: Devices = {
    root: { type: 'disk', path: '/', pool: s.pool, ...(s.limits?.rootDevice ?? {}) },
    eth0: {
      type: 'nic',
      name: 'eth0',
      network: s.bridge,
      host_name: hostVethName(s.name),
      // firewalld matches the sandbox by its source MAC (the veth is hidden behind the bridge):
      // Incus then drops frames with another MAC or address, so root inside cannot step out of its zone.
      ...(s.network.backend === 'firewalld' ? { 'security.mac_filtering': 'true', 'security.ipv4_filtering': 'true', 'security.ipv6_filtering': 'true' } : {}),
    },
    workspace: { type: 'disk', source: s.workspace, path: WORKSPACE_MOUNT, ...(shift ? { shift: 'true' } : {}) },
    ...protectedDevices(s.workspace, WORKSPACE_MOUNT, s.protectedPaths, shift),
  };
  s.mounts.forEach((m, i) => {
    devices[`mount-${i + 1}`] = { type: 'disk', source: m.host, path: m.container, ...(m.readonly ? { readonly: 'true' } : {}), ...(shift ? { shift: 'true' } : {}) };
  });
  if (s.sshAgentSocket) {
    devices['ssh-agent'] = {
      type: 'proxy',
      connect: `unix:${s.sshAgentSocket}`,
      listen: 'unix:/tmp/ssh-agent.sock',
      bind: 'container',
      uid: '1000',
      gid: '1000',
      mode: '0600',
    };
  }
  const config: Record<string, string> = {
    // Never privileged; checked again against the profiles before launch.
    'security.privileged': 'false',
    // No /dev/incus: it reveals host paths and the host user's name.
    'security.guestapi': 'false',
    'security.nesting': s.nesting ? 'true' : 'false',
    'linux.sysctl.net.ipv6.conf.all.disable_ipv6': '1',
    'linux.sysctl.net.ipv6.conf.default.disable_ipv6': '1',
    'boot.autostart': 'false',
    ...(s.nesting ? { 'security.syscalls.intercept.mknod': 'true', 'security.syscalls.intercept.setxattr': 'true' } : {}),
    ...(s.idmap.kind === 'raw' ? { 'raw.idmap': s.idmap.rawIdmap } : {}),
    ...(s.timezone ? { 'environment.TZ': s.timezone } : {}),
    ...(s.limits?.config ?? {}),
    [LABELS.managed]: 'true',
    [LABELS.workspace]: s.workspace,
    [LABELS.slot]: String(s.slot),
    [LABELS.kind]: s.kind,
    [LABELS.tool]: s.tool,
    [LABELS.persistent]: String(s.persistent),
    [LABELS.session]: s.session,
    [LABELS.profile]: s.profile,
    [LABELS.phase]: 'creating',
    [LABELS.owner]: String(s.ownerUid),
    [LABELS.ownerHome]: s.ownerHome,
    [LABELS.launcher]: String(s.launcherPid),
    [LABELS.createdAt]: s.now.toISOString(),
    [LABELS.image]: s.image,
    ...(s.runtime ? { [LABELS.runtime]: JSON.stringify(s.runtime) } : {}),
    [LABELS.network]: encodeNetworkLabel(s.network),
    ...(s.guardScope ? { [LABELS.guardScope]: s.guardScope } : {}),
    ...(s.monitor ? { [LABELS.monitor]: encodePolicy(s.monitor) } : {}),
    ...(s.guardSocket ? { [LABELS.guard]: s.guardSocket } : {}),
    ...(s.stateDirs?.length ? { [LABELS.stateDirs]: JSON.stringify(s.stateDirs) } : {}),
  };
  return {
    name: s.name,
    type: 'container',
    source: { type: 'image', alias: s.image },
    profiles: ['default'],
    config,
    devices,
    description: `COI sandbox for ${s.workspace} (slot ${s.slot})`,
  };
}

/** Keys that would make a container privileged, whoever sets them. */
export function privilegedKeys(config: Record<string, string> | undefined): string[] {
  if (!config) return [];
  return ['security.privileged'].filter((k) => config[k] === 'true');
}
