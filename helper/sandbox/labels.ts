/**
 * What we record on each instance we create (user.coi.* config keys), and how
 * a sandbox is read back from Incus. Listing is always rebuilt from these
 * labels: no cache, no file that can drift.
 */
import { policyOf } from '../guard/monitor/policy';
import type { InstanceFull } from '../incus/types';
import { sessionStatePaths } from '../sessions/paths';

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
  /** The launching user's home, where the guard saves the session (checked to belong to the owner). */
  ownerHome: 'user.coi.owner-home',
  launcher: 'user.coi.launcher-pid',
  createdAt: 'user.coi.created-at',
  image: 'user.coi.image',
  /** Runtime limits the guard enforces (JSON of RuntimeLabel); absent when there are none. */
  runtime: 'user.coi.runtime',
  /**
   * The pid of a coi process that stops the sandbox on purpose and starts it
   * again (a snapshot restore): while that process lives, the guard does not
   * reap the stopped sandbox. A hold whose process died counts for nothing.
   */
  hold: 'user.coi.hold',
  /** The network settings the guard enforces (compact JSON, see network-label.ts). */
  network: 'user.coi.network',
  /** Which guard fences it: absent for the host's guard, a scope for a test's guard. */
  guardScope: 'user.coi.guard-scope',
  /** The monitoring policy (compact JSON, see guard/monitor/policy.ts); absent = not monitored. */
  monitor: 'user.coi.monitor',
  /**
   * The guard socket the sandbox was made with, when not the default one
   * (tests run private guards): only that guard watches it.
   */
  guard: 'user.coi.guard-socket',
  /**
   * Extra home paths saved with the session ([tool.custom] state_dirs, JSON
   * array): the guard saves a powered-off sandbox's session without the config.
   */
  stateDirs: 'user.coi.state-dirs',
} as const;

/** The extra state paths of a label; anything unsafe or malformed is dropped. */
export function parseStateDirsLabel(text: string | undefined): string[] {
  if (!text) return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? sessionStatePaths([], v) : [];
  } catch {
    return [];
  }
}

/** What the guard needs to enforce max_duration without any coi process alive. */
export interface RuntimeLabel {
  maxDurationMs: number;
  autoStop: boolean;
  stopGraceful: boolean;
}

export function parseRuntimeLabel(text: string | undefined): RuntimeLabel | undefined {
  if (!text) return undefined;
  try {
    const v = JSON.parse(text) as Partial<RuntimeLabel>;
    if (typeof v.maxDurationMs !== 'number' || !(v.maxDurationMs > 0)) return undefined;
    return { maxDurationMs: v.maxDurationMs, autoStop: v.autoStop !== false, stopGraceful: v.stopGraceful !== false };
  } catch {
    return undefined;
  }
}

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
  ownerHome?: string;
  launcherPid?: number;
  /** See LABELS.hold. */
  holdPid?: number;
  /** The guard watches it (monitoring enabled when it was created). */
  monitored?: boolean;
  /** Extra home paths saved with its session (see LABELS.stateDirs). */
  stateDirs?: string[];
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
  if (!i.name) return undefined;
  if (c[LABELS.managed] !== 'true') return undefined;
  // A warm pool member nobody has taken is no sandbox yet (see pool/spec.ts).
  if (c['user.coi.pool-state'] === 'filling' || c['user.coi.pool-state'] === 'idle') return undefined;
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
  if (c[LABELS.ownerHome]) info.ownerHome = c[LABELS.ownerHome];
  if (c[LABELS.launcher]) info.launcherPid = Number(c[LABELS.launcher]);
  if (/^\d+$/.test(c[LABELS.hold] ?? '')) info.holdPid = Number(c[LABELS.hold]);
  const stateDirs = parseStateDirsLabel(c[LABELS.stateDirs]);
  if (stateDirs.length) info.stateDirs = stateDirs;
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
