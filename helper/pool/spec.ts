/**
 * Warm pool: what a pooled container is, pure.
 *
 * A pool belongs to one workspace and one set of the settings that cannot
 * change while a container runs (image, storage pool, bridge, the security
 * keys, raw.idmap, limits, root disk, and the disks: the workspace, its
 * read-only protected paths and `[[mounts]]`). Its members carry the names
 * sandboxes of that workspace would have (`<prefix><hash>-<slot>`), so a
 * taken member is exactly what a cold launch would have made, name, hostname
 * and host-side interface included: `coi shell` keeps its names, and nothing
 * needs renaming (Incus cannot rename a running container, and the guard's
 * fence is bound to the interface name derived from the container name).
 *
 * The workspace's disks are part of the member from its creation, not
 * attached when it is taken: Incus cannot hot-plug a mount on top of a
 * hot-plugged one (liblxc's mount injection fails with ENOENT, and Incus's
 * clean-up then removes the mount target — through the shared workspace,
 * the placeholder on the host). So a member holds its own workspace, and
 * nothing of any other; no agent, label of a session, limit of a session or
 * open network before it is taken.
 *
 * A member is labelled from its first moment (the create request carries the
 * labels), so a crash at any point leaves an instance `coi clean` recognises:
 *   user.coi.pool        the pool key (hash of the spec)
 *   user.coi.pool-state  filling → idle → taken (never back)
 *   user.coi.pool-filler the guard pid that is filling it
 *   user.coi.pool-fp     the image fingerprint it was made from
 *   user.coi.pool-spec   the spec, so a restarted guard finds its demand again
 * and with `user.coi.managed` plus the strictest network label (an allowlist
 * that allows nothing), so the guard fences it before it ever starts and the
 * later switch to the sandbox's own mode is one rules transaction.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { InstanceCreate, InstanceFull } from '../incus/types';
import { LABELS } from '../sandbox/labels';
import { hostVethName } from '../sandbox/naming';
import { encodeNetworkLabel, NetworkLabel } from '../sandbox/network-label';

export const POOL_LABELS = {
  key: 'user.coi.pool',
  state: 'user.coi.pool-state',
  filler: 'user.coi.pool-filler',
  fingerprint: 'user.coi.pool-fp',
  spec: 'user.coi.pool-spec',
} as const;

export type PoolState = 'filling' | 'idle' | 'taken';

/** Nothing reachable but the gateway's DNS, which resolves nothing for it. */
export const STRICTEST_NETWORK: NetworkLabel = { v: 1, mode: 'allowlist', allowLocal: false, cidrs: [], domains: [], ports: [], refreshMin: 30 };

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const SIZE = /^\d+(\.\d+)?(B|[kKMGTPE]i?B)$|^\d+iops$/;

/**
 * The config keys a pool member may be created with, and what each may hold.
 * The guard creates members as root on a client's word: nothing else passes,
 * and nothing here can make a container privileged.
 */
const BASE_KEYS: Record<string, RegExp> = {
  'security.privileged': /^false$/,
  'security.guestapi': /^false$/,
  'security.nesting': /^(true|false)$/,
  'security.syscalls.intercept.mknod': /^(true|false)$/,
  'security.syscalls.intercept.setxattr': /^(true|false)$/,
  'linux.sysctl.net.ipv6.conf.all.disable_ipv6': /^1$/,
  'linux.sysctl.net.ipv6.conf.default.disable_ipv6': /^1$/,
  'boot.autostart': /^false$/,
  'raw.idmap': /^uid \d{1,10} \d{1,10}\ngid \d{1,10} \d{1,10}$/,
  'environment.TZ': /^[A-Za-z0-9_+/-]{1,64}$/,
  'limits.cpu': /^\d+(-\d+)?(,\d+(-\d+)?)*$/,
  'limits.cpu.allowance': /^\d+%$|^\d+ms\/\d+ms$/,
  'limits.cpu.priority': /^\d{1,2}$/,
  'limits.memory': /^\d+(%|[KMGT]i?B)$/,
  'limits.memory.enforce': /^(hard|soft)$/,
  'limits.memory.swap': /^(true|false)$/,
  'limits.processes': /^\d{1,9}$/,
  'limits.disk.priority': /^\d{1,2}$/,
};
const ROOT_KEYS: Record<string, RegExp> = { size: SIZE, 'limits.read': SIZE, 'limits.write': SIZE, 'limits.max': SIZE };
/** Keys a member must be created with (the rest may be absent). */
const REQUIRED = ['security.privileged', 'security.guestapi', 'security.nesting'];

function keysOk(rules: Record<string, RegExp>) {
  return z.record(z.string(), z.string()).superRefine((rec, ctx) => {
    for (const [k, v] of Object.entries(rec)) {
      const re = rules[k];
      if (!re) ctx.addIssue({ code: 'custom', message: `${k} may not be set on a pooled container` });
      else if (!re.test(v)) ctx.addIssue({ code: 'custom', message: `${k}=${JSON.stringify(v)} is not allowed on a pooled container` });
    }
  });
}

const HOST_PATH = /^\/[^\0\n]{0,4095}$/;
/** A disk of the workspace (or a `[[mounts]]` entry), as buildInstanceSpec makes it. */
const diskDevice = z
  .object({
    type: z.literal('disk'),
    source: z.string().regex(HOST_PATH),
    path: z.string().regex(HOST_PATH),
    readonly: z.literal('true').optional(),
    shift: z.literal('true').optional(),
  })
  .strict();

export const poolSpecSchema = z
  .object({
    v: z.literal(1),
    prefix: z.string().regex(/^[a-z][a-z0-9-]{0,20}$/),
    workspaceHash: z.string().regex(/^[0-9a-f]{8}$/),
    /** The workspace's real path: the source of the `workspace` disk. */
    workspace: z.string().regex(HOST_PATH),
    disks: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), diskDevice).refine((d) => Object.keys(d).length <= 128),
    image: z.string().regex(NAME),
    storagePool: z.string().regex(NAME),
    bridge: z.string().regex(NAME),
    config: keysOk(BASE_KEYS).refine((c) => REQUIRED.every((k) => k in c), { message: `a pooled container needs ${REQUIRED.join(', ')}` }),
    rootDevice: keysOk(ROOT_KEYS),
  })
  .strict()
  .refine((s) => s.disks.workspace?.source === s.workspace && s.disks.workspace.path === '/workspace', { message: 'the workspace disk must be the workspace, at /workspace' });
export type PoolSpec = z.infer<typeof poolSpecSchema>;

/**
 * The pool spec of a cold launch's instance: the keys that must already be
 * right when the container starts. Labels, devices and the rest are applied
 * when a member is taken.
 */
export function poolSpecOf(cold: InstanceCreate, o: { prefix: string; workspaceHash: string; workspace: string; image: string; storagePool: string; bridge: string }): PoolSpec {
  const config: Record<string, string> = {};
  for (const [k, v] of Object.entries(cold.config ?? {})) if (k in BASE_KEYS) config[k] = v;
  const rootDevice: Record<string, string> = {};
  for (const [k, v] of Object.entries(cold.devices?.root ?? {})) if (k in ROOT_KEYS) rootDevice[k] = v;
  const disks: PoolSpec['disks'] = {};
  for (const [k, d] of Object.entries(cold.devices ?? {})) {
    if (k === 'root' || d.type !== 'disk' || !d.source || !d.path) continue;
    disks[k] = { type: 'disk', source: d.source, path: d.path, ...(d.readonly === 'true' ? { readonly: 'true' as const } : {}), ...(d.shift === 'true' ? { shift: 'true' as const } : {}) };
  }
  return { v: 1, prefix: o.prefix, workspaceHash: o.workspaceHash, workspace: o.workspace, disks, image: o.image, storagePool: o.storagePool, bridge: o.bridge, config, rootDevice };
}

/** The devices a taken member still lacks (those poolSpecOf leaves out: the SSH agent's proxy). */
export function devicesToAttach(cold: InstanceCreate): NonNullable<InstanceCreate['devices']> {
  const out: NonNullable<InstanceCreate['devices']> = {};
  for (const [k, d] of Object.entries(cold.devices ?? {})) if (k !== 'root' && k !== 'eth0' && d.type !== 'disk') out[k] = d;
  return out;
}

/** Sorted-key JSON: the same spec always gives the same key. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(v);
}

export function poolKey(spec: PoolSpec): string {
  return createHash('sha256').update(canonical(spec)).digest('hex').slice(0, 16);
}

export function encodePoolSpec(spec: PoolSpec): string {
  return canonical(spec);
}

export function parsePoolSpec(text: string | undefined): PoolSpec | undefined {
  if (!text) return undefined;
  try {
    const r = poolSpecSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

export interface MemberInput {
  name: string;
  spec: PoolSpec;
  fingerprint: string;
  fillerPid: number;
  /** The guard's scope ('' for the host's guard). */
  scope: string;
  guardSocket?: string;
  now: Date;
}

/** A pool member as created: started later, after the guard fenced it. */
export function buildMember(m: MemberInput): InstanceCreate {
  const key = poolKey(m.spec);
  return {
    name: m.name,
    type: 'container',
    source: { type: 'image', fingerprint: m.fingerprint },
    profiles: ['default'],
    config: {
      ...m.spec.config,
      [LABELS.managed]: 'true',
      [LABELS.createdAt]: m.now.toISOString(),
      [LABELS.image]: m.spec.image,
      [LABELS.network]: encodeNetworkLabel(STRICTEST_NETWORK),
      ...(m.scope ? { [LABELS.guardScope]: m.scope } : {}),
      ...(m.guardSocket ? { [LABELS.guard]: m.guardSocket } : {}),
      [POOL_LABELS.key]: key,
      [POOL_LABELS.state]: 'filling',
      [POOL_LABELS.filler]: String(m.fillerPid),
      [POOL_LABELS.fingerprint]: m.fingerprint,
      [POOL_LABELS.spec]: encodePoolSpec(m.spec),
    },
    devices: {
      ...m.spec.disks,
      root: { type: 'disk', path: '/', pool: m.spec.storagePool, ...m.spec.rootDevice },
      eth0: { type: 'nic', name: 'eth0', network: m.spec.bridge, host_name: hostVethName(m.name) },
    },
    description: `COI warm pool member (workspace ${m.spec.workspaceHash}, not yet taken)`,
  };
}

export interface Member {
  name: string;
  key: string;
  state: PoolState;
  fillerPid?: number;
  fingerprint: string;
  spec?: PoolSpec;
  status: string;
  scope: string;
  /** Taken members: the pid that took it (the launcher label). */
  launcherPid?: number;
  /** Taken and labelled for a workspace by its launcher. */
  adopted: boolean;
}

/** The pool side of an instance, or undefined when it is no pool member. */
export function memberOf(i: Pick<InstanceFull, 'name' | 'config' | 'status'>): Member | undefined {
  const c = i.config ?? {};
  const key = c[POOL_LABELS.key];
  const state = c[POOL_LABELS.state];
  if (!key || (state !== 'filling' && state !== 'idle' && state !== 'taken')) return undefined;
  const m: Member = { name: i.name, key, state, fingerprint: c[POOL_LABELS.fingerprint] ?? '', status: i.status, scope: c[LABELS.guardScope] ?? '', adopted: !!c[LABELS.workspace] };
  if (/^\d+$/.test(c[POOL_LABELS.filler] ?? '')) m.fillerPid = Number(c[POOL_LABELS.filler]);
  if (/^\d+$/.test(c[LABELS.launcher] ?? '')) m.launcherPid = Number(c[LABELS.launcher]);
  const spec = parsePoolSpec(c[POOL_LABELS.spec]);
  if (spec) m.spec = spec;
  return m;
}

/**
 * A warm `coi run` sandbox whose coi process is gone is being deleted by the
 * guard (it watches the taker's connection): listed as stopping, never as a
 * live sandbox, for the moment the delete takes.
 */
export function endingRun<T extends { kind: string; state: string; launcherPid?: number }>(info: T | undefined, config: Record<string, string> | undefined, alive: (pid: number) => boolean): T | undefined {
  if (!info || info.kind !== 'run' || config?.[POOL_LABELS.state] !== 'taken' || info.launcherPid === undefined || alive(info.launcherPid)) return info;
  return { ...info, state: 'stopping' };
}

/** Not a sandbox (yet): a member nobody has taken, which listings leave out. */
export function isUntakenMember(config: Record<string, string> | undefined): boolean {
  const s = config?.[POOL_LABELS.state];
  return s === 'filling' || s === 'idle';
}

/**
 * What `coi clean` deletes of the pool: every member nobody has taken (the
 * pool is emptied; the guard refills it on the next launch that wants one),
 * and taken members whose taker died before it made them a sandbox.
 */
export function poolCleanable(members: readonly Member[], prefix: string, alive: (pid: number) => boolean): { name: string; reason: string }[] {
  const out: { name: string; reason: string }[] = [];
  for (const m of members) {
    if (!m.name.startsWith(prefix)) continue;
    if (m.state === 'idle') out.push({ name: m.name, reason: 'warm pool member' });
    else if (m.state === 'filling') out.push({ name: m.name, reason: m.fillerPid && alive(m.fillerPid) ? 'warm pool member being filled' : 'warm pool member whose guard died while filling it' });
    else if (!m.adopted && !(m.launcherPid && alive(m.launcherPid))) out.push({ name: m.name, reason: 'warm pool member taken by a launch that died' });
  }
  return out;
}
