/**
 * What we record on each instance we create (user.coi.* config keys), and how
 * a sandbox is read back from Incus. Listing is always rebuilt from these
 * labels: no cache, no file that can drift.
 */
import { policyOf } from '../guard/monitor/policy';
import type { InstanceFull } from '../incus/types';

export const LABELS = {
  managed: 'user.coi.managed',
  workspace: 'user.coi.workspace',
  slot: 'user.coi.slot',
  tool: 'user.coi.tool',
  persistent: 'user.coi.persistent',
  session: 'user.coi.session',
  profile: 'user.coi.profile',
  kind: 'user.coi.kind',
  /** "creating" until the launch completed; what `coi clean` uses to find half-made sandboxes. */
  phase: 'user.coi.phase',
  owner: 'user.coi.owner-uid',
  launcher: 'user.coi.launcher-pid',
  createdAt: 'user.coi.created-at',
  image: 'user.coi.image',
  /** The monitoring policy (compact JSON, see guard/monitor/policy.ts); absent = not monitored. */
  monitor: 'user.coi.monitor',
  /**
   * The guard socket the sandbox was made with, when not the default one
   * (tests run private guards): only that guard watches it.
   */
  guard: 'user.coi.guard-socket',
} as const;

export type SandboxKind = 'shell' | 'run';
export type SandboxState = 'running' | 'frozen' | 'stopped' | 'starting' | 'stopping' | 'error';

export interface SandboxInfo {
  name: string;
  workspace: string;
  slot: number;
  kind: SandboxKind;
  state: SandboxState;
  tool: string;
  persistent: boolean;
  session: string;
  profile: string;
  phase: 'creating' | 'ready';
  address?: string;
  createdAt: string;
  image: string;
  ownerUid?: number;
  launcherPid?: number;
  /** The guard watches it (monitoring enabled when it was created). */
  monitored?: boolean;
}

export function stateOf(status: string): SandboxState {
  switch (status) {
    case 'Running':
      return 'running';
    case 'Frozen':
    case 'Freezing':
      return 'frozen';
    case 'Stopped':
      return 'stopped';
    case 'Starting':
      return 'starting';
    case 'Stopping':
      return 'stopping';
    default:
      return 'error';
  }
}

/** A sandbox from an instance, or undefined for instances that are not ours. */
export function sandboxFromInstance(i: InstanceFull): SandboxInfo | undefined {
  const c = i.config ?? {};
  if (c[LABELS.managed] !== 'true') return undefined;
  const info: SandboxInfo = {
    name: i.name,
    workspace: c[LABELS.workspace] ?? '',
    slot: Number(c[LABELS.slot] ?? 0),
    kind: c[LABELS.kind] === 'run' ? 'run' : 'shell',
    state: stateOf(i.status),
    tool: c[LABELS.tool] ?? '',
    persistent: c[LABELS.persistent] === 'true',
    session: c[LABELS.session] ?? '',
    profile: c[LABELS.profile] ?? 'default',
    phase: c[LABELS.phase] === 'creating' ? 'creating' : 'ready',
    createdAt: c[LABELS.createdAt] ?? i.created_at,
    image: c[LABELS.image] ?? '',
  };
  const address = ipv4Of(i);
  if (address) info.address = address;
  if (c[LABELS.owner]) info.ownerUid = Number(c[LABELS.owner]);
  if (c[LABELS.launcher]) info.launcherPid = Number(c[LABELS.launcher]);
  if (c[LABELS.monitor]) info.monitored = policyOf(c[LABELS.monitor])?.enabled === true;
  return info;
}

function ipv4Of(i: InstanceFull): string | undefined {
  const nets = i.state?.network ?? {};
  for (const [dev, n] of Object.entries(nets)) {
    if (dev === 'lo') continue;
    const a = n.addresses.find((x) => x.family === 'inet' && x.scope === 'global');
    if (a) return a.address;
  }
  return undefined;
}
