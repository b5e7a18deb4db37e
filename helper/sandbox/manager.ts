/**
 * Sandboxes: the core the `coi` commands and the JSON-RPC methods both call.
 *
 * A launch runs under the workspace's lock, creates the instance stopped and
 * labelled `phase=creating`, starts it, waits until it answers, starts the tool
 * in tmux, and only then marks it `phase=ready`. Anything that fails after the
 * instance exists deletes it; a coi killed mid-launch leaves a `creating`
 * instance whose launcher is dead, which `coi clean` removes.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { instanceEnded } from '../incus/events';
import { ExecNotStarted, execInteractive, execStream, HeldExec, holdExec, InteractiveSession } from '../incus/exec-stream';
import type { InstanceCreate, InstanceFull, Profile } from '../incus/types';
import type { MonitorPolicy } from '../guard/monitor/policy';
import { frozenBehindIncus } from '../host/freezer';
import { DEFAULT_GUARD_SOCKET, guardSocketPath } from '../guard/paths';
import type { Log } from '../log';
import { listSessions, pickSession, restoreState, saveState, sessionDir, SessionMetadata, sessionStatePaths, writeMetadata } from '../sessions/store';
import { sandboxContext, SandboxFacts } from '../tools/context';
import { getTool, LaunchContext, PermissionMode, ToolDef } from '../tools/registry';
import { waitBooted } from './boot';
import { adoption, PoolAccess, PoolMiss } from '../pool/access';
import { endingRun, Member, memberOf, poolCleanable, PoolSpec, poolKey, poolSpecOf } from '../pool/spec';
import { idmapMode, IdmapMode, subidDelegates } from './idmap';
import { LABELS, RuntimeLabel, SandboxInfo, sandboxFromInstance, SandboxKind } from './labels';
import { acquireLock, pidAlive } from './lock';
import { containerName, slotOf, tmuxSession, workspaceHash } from './naming';
import { preparePlaceholders } from './protected';
import { chooseSlot, ExistingSlot } from './slots';
import { encodeNetworkLabel, NetworkLabel } from './network-label';
import { buildInstanceSpec, privilegedKeys, WORKSPACE_MOUNT } from './spec';
import { pruneCheckpoints, takeSnapshot } from '../snapshot/checkpoint';

export interface SandboxSettings {
  prefix: string;
  image: string;
  pool: string;
  bridge: string;
  profile: string;
  persistent: boolean;
  tool: string;
  protectedPaths: string[];
  /** Host variable names copied in. Nothing else of the host environment enters. */
  forwardEnv: string[];
  environment: Record<string, string>;
  mounts: { host: string; container: string; readonly: boolean }[];
  sshForwardAgent: boolean;
  nesting: boolean;
  readyTimeoutSec: number;
  shutdownTimeoutSec: number;
  codeUid: number;
  codeGid: number;
  disableShift: boolean;
  limits?: { config: Record<string, string>; rootDevice: Record<string, string> };
  /** From `[monitoring]`; recorded on the instance for the guard. */
  monitor?: MonitorPolicy;
  /** What the guard enforces on the sandbox's network, recorded on the instance. */
  network: NetworkLabel;
  /** Settings of `[network]` that could not be honoured, for the user to read. */
  networkWarnings?: string[];
  /** The guard scope (COI_GUARD_SCOPE) recorded on the instance: only a guard of that scope fences it. */
  guardScope?: string;
  /** max_duration and how to end it; enforced by the guard. */
  runtime?: RuntimeLabel;
  agent: AgentSettings;
  /** `[snapshots]`: a checkpoint when a session starts, keeping the last `keep`. */
  snapshots?: { auto: boolean; keep: number };
  /** `[pool] size`: warm containers the guard keeps ready for this workspace and settings. */
  poolSize?: number;
}

/** How the agent is started and told about its sandbox. */
export interface AgentSettings {
  permissionMode: PermissionMode;
  autoContext: boolean;
  binary?: string;
  customArgs?: string[];
  customResumeArgs?: string[];
  /** [tool.custom] state_dirs: home paths saved with the session besides the tool's own. */
  stateDirs?: string[];
  model?: string;
  /** Facts for ~/SANDBOX_CONTEXT.md that come from configuration. */
  network: { mode: string; allowedDomains: string[] };
  limits: SandboxFacts['limits'];
  profileContexts: { profile: string; text: string }[];
}

export interface HostIdentity {
  uid: number;
  gid: number;
  home: string;
  env: NodeJS.ProcessEnv;
}

export interface OpenRequest {
  workspace: string;
  slot?: number;
  kind: SandboxKind;
  /** Start the tool in tmux (shell) or not (run). */
  startTool: boolean;
  /** Resume a saved session of this workspace: true for the newest, or a session id (prefix). */
  resume?: true | string;
  /**
   * Branch: the new sandbox is a copy of this snapshot of another sandbox of
   * the same workspace, in a new slot (never a reused one).
   */
  from?: { instance: string; snapshot: string; persistent: boolean };
  /**
   * Told the name of a warm member as its take is asked for: the launch's
   * first command can be set up while the guard hands the member over (it
   * must not start before the take has answered).
   */
  onTake?: (name: string) => void;
}

const CODE_HOME = '/home/code';
const CONTEXT_FILE = `${CODE_HOME}/SANDBOX_CONTEXT.md`;

export interface ManagerDeps {
  incus: IncusClient;
  log: Log;
  host: HostIdentity;
  /** Asks the guard to delegate the user's ids for raw.idmap; undefined when no guard is reachable. */
  allowIdmap?: (uid: number, gid: number) => Promise<void>;
  /** Reports launch progress (stderr on the CLI, a progress notification in VS Code). */
  progress?: (message: string) => void;
  /**
   * Asks the guard to fence the (created, not yet started) sandbox's network
   * and resolves once its rules are in place. Without it no sandbox starts.
   */
  secureNetwork?: (name: string) => Promise<{ mode: string; warnings: string[] }>;
  /** Warnings the user should read (the CLI prints them, JSON-RPC returns them with the result). */
  warn?: (message: string) => void;
  /** The warm pool (`[pool] size` > 0 and a guard to keep it). */
  pool?: PoolAccess;
}

const SYSTEM_DIRS = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/sys', '/usr', '/var', '/home'];

/** The real, absolute workspace path; refuses what would share too much of the host. */
export function resolveWorkspace(input: string, home: string): string {
  let real: string;
  try {
    real = realpathSync(path.resolve(input));
  } catch {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `workspace ${input} does not exist`);
  }
  if (!statSync(real).isDirectory()) throw new CoiError(ErrorCodes.INVALID_INPUT, `workspace ${real} is not a directory`);
  if (SYSTEM_DIRS.includes(real) || real === path.resolve(home)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `refusing to share ${real} with a sandbox: it holds far more than a project (keys, credentials, the system)`, {
      remedy: { title: 'Open a project folder instead', shell: 'cd ~/projects/my-app && coi shell' },
    });
  }
  return real;
}

/** How long a stopped sandbox's exec may take to end by itself before an attached session is ended for it. */
export const ATTACH_STOP_GRACE_MS = 2_000;

export interface AttachSession extends InteractiveSession {
  /** Set when the session was ended because the sandbox went away under it. */
  endedBy(): 'deleted' | 'stopped' | undefined;
}

export class SandboxManager {
  /** Warm one-shot sandboxes whose deletion the guard takes over when we let go (see run). */
  private readonly warmEnds = new Map<string, () => boolean>();

  constructor(private readonly s: SandboxSettings, private readonly d: ManagerDeps) {}

  get settings(): SandboxSettings {
    return this.s;
  }

  /** Every sandbox, rebuilt from Incus labels. */
  async list(): Promise<SandboxInfo[]> {
    const all = await this.d.incus.listInstances();
    return all
      .filter((i) => i.name.startsWith(this.s.prefix))
      .map((i) => endingRun(sandboxFromInstance(i), i.config, pidAlive))
      .filter((x): x is SandboxInfo => x !== undefined)
      .sort((a, b) => a.workspace.localeCompare(b.workspace) || a.slot - b.slot);
  }

  async get(name: string): Promise<SandboxInfo> {
    const inst = await this.d.incus.getInstance(name).catch((e: unknown) => {
      if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) throw new CoiError(ErrorCodes.NOT_FOUND, `no sandbox named ${name}`, { remedy: { title: 'List sandboxes', shell: 'coi list' } });
      throw e;
    });
    const info = sandboxFromInstance(inst);
    if (!info) throw new CoiError(ErrorCodes.NOT_FOUND, `${name} is not a COI sandbox (it has no user.coi.managed label); COI leaves it alone`);
    return info;
  }

  /** Launches (or, for persistent sandboxes, restarts) a sandbox for a workspace. */
  async open(req: OpenRequest): Promise<SandboxInfo> {
    const workspace = resolveWorkspace(req.workspace, this.d.host.home);
    const tool = getTool(this.s.tool);
    // Asked while the lock is taken and the instances listed (a warm launch waits for every round trip);
    // nothing is created before it has answered.
    const privileged = this.refusePrivileged();
    privileged.catch(() => undefined);
    // A launch that may take a warm member connects to the guard now, while it looks around.
    if (!req.from && (this.d.pool?.size ?? 0) > 0) this.d.pool!.prepare?.();
    const hash = workspaceHash(workspace);
    const lock = await acquireLock(path.join(this.d.host.home, '.coi', 'locks'), hash).catch(async (e: unknown) => {
      await privileged;
      throw e;
    });
    try {
      return await this.openLocked(req, workspace, hash, tool, new Set(), privileged);
    } finally {
      await lock.release();
    }
  }

  /**
   * Chooses the slot and launches, under the workspace's lock. `avoid`: idle
   * warm members the guard would not hand over (outdated, taken meanwhile),
   * whose slots count as occupied.
   */
  private async openLocked(req: OpenRequest, workspace: string, hash: string, tool: ToolDef, avoid: Set<number>, privileged: Promise<void> = Promise.resolve()): Promise<SandboxInfo> {
    let mine = (await Promise.all([this.d.incus.listInstances({ recursion: 1 }), privileged]))[0].filter((i) => slotOf(this.s.prefix, hash, i.name) !== undefined);
    const persistent = req.kind === 'shell' && (this.s.persistent || (req.from?.persistent ?? false));
    const resumed = req.resume !== undefined ? await this.findSession(workspace, tool, req.resume) : undefined;
    // A persistent sandbox that still holds the session is restarted as it is.
    const keeper = resumed && mine.some((i) => i.name === resumed.container_name) ? resumed.container_name : undefined;
    const pool = !req.from && !keeper ? this.poolFor(workspace, hash, req, persistent, tool) : undefined;
    if (pool && avoid.size === 0) {
      // Members are made with the workspace's disks: the placeholders must exist first.
      await preparePlaceholders(workspace, this.s.protectedPaths);
      mine = await this.waitForFilling(pool, mine, hash, req.slot);
    }
    const existing = new Map<number, ExistingSlot>();
    /** Idle warm members of this launch's pool, by slot: free for this launch. */
    const idle = new Map<number, string>();
    for (const i of mine) {
      const slot = slotOf(this.s.prefix, hash, i.name)!;
      const m = memberOf(i);
      if (m && m.state !== 'taken') {
        if (pool && m.key === pool.key && m.state === 'idle' && i.status === 'Running' && !avoid.has(slot)) idle.set(slot, i.name);
        else existing.set(slot, { state: 'running', persistent: false }); // another pool's member, or not ready: occupied
        continue;
      }
      const info = sandboxFromInstance(i);
      existing.set(slot, { state: info?.state ?? 'error', persistent: info?.persistent ?? false });
    }
    const requested = keeper ? slotOf(this.s.prefix, hash, keeper) : req.slot;
    let choice = chooseSlot(existing, { ...(requested !== undefined ? { requested } : {}), persistent: (persistent && !req.from) || keeper !== undefined });
    // A branch is always a new container.
    if (req.from && choice.reuse) choice = { ...chooseSlot(existing, { persistent: false }), notice: `slot ${choice.slot} holds a stopped sandbox; the branch takes a free slot` };
    // Auto: a warm slot first.
    if (pool && !choice.reuse && requested === undefined && idle.size > 0 && !idle.has(choice.slot)) choice = { slot: Math.min(...idle.keys()), reuse: false };
    if (choice.notice) this.d.progress?.(choice.notice);
    const name = containerName(this.s.prefix, workspace, choice.slot);
    if (choice.reuse) {
      this.d.progress?.(`restarting persistent sandbox ${name}`);
      // Today's network settings, fenced before it starts like a new sandbox.
      await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), {
        config: {
          [LABELS.network]: encodeNetworkLabel(this.s.network),
          [LABELS.guardScope]: this.s.guardScope ?? '',
          [LABELS.stateDirs]: this.s.agent.stateDirs?.length ? JSON.stringify(sessionStatePaths([], this.s.agent.stateDirs)) : '',
        },
      });
      await this.secureNetwork(name);
      await this.d.incus.setState(name, 'start', { timeoutMs: 120_000 });
      await this.waitReady(name);
      const info = await this.get(name);
      if (req.kind === 'shell') await this.autoCheckpoint(name);
      if (req.startTool) await this.launchAgent(name, workspace, tool, info.session, resumed && resumed.container_name === name ? 'in-place' : resumed);
      return this.get(name);
    }
    const warm = pool && idle.has(choice.slot) ? pool.spec : undefined;
    // No warm one for this launch: say there is demand, so the next launch finds one.
    if (pool && !warm) void this.d.pool!.take(pool.spec);
    try {
      return await this.create(name, workspace, choice.slot, req, persistent, tool, resumed, warm);
    } catch (e) {
      if (e instanceof PoolMiss) return this.openLocked(req, workspace, hash, tool, new Set([...avoid, choice.slot]));
      // The guard refilling the pool may have made this free slot's container between our look and our
      // create (it does not hold the workspace lock): look again, once.
      // (Incus says "already exists", or "busy running a create operation" while the guard is still creating it.)
      if (pool && !warm && avoid.size === 0 && /already exists|busy running a "?create"? operation/i.test(toCoiError(e).message)) {
        this.d.log.debug(`${name} was made meanwhile (the pool refilling): choosing again`);
        return this.openLocked(req, workspace, hash, tool, new Set([0]));
      }
      throw e;
    }
  }

  /**
   * Asks the guard to fill this workspace's warm pool (`coi pool warm`) and,
   * with a wait, resolves once `[pool] size` members are idle. Returns the idle members.
   */
  async warmPool(workspaceIn: string, waitMs = 0): Promise<string[]> {
    if (!this.d.pool || this.d.pool.size <= 0) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, 'the warm pool is off ([pool] size = 0)', { remedy: { title: 'Set a size', shell: 'printf "[pool]\\nsize = 1\\n" >> ~/.coi/config.toml' } });
    }
    const workspace = resolveWorkspace(workspaceIn, this.d.host.home);
    const hash = workspaceHash(workspace);
    const pool = this.poolFor(workspace, hash, { workspace, kind: 'shell', startTool: true }, this.s.persistent, getTool(this.s.tool));
    if (!pool) throw new CoiError(ErrorCodes.INVALID_INPUT, `sandboxes ${this.s.network.backend === 'firewalld' ? 'with network.backend = "firewalld"' : 'in allowlist mode'} are not taken from the warm pool yet: they start cold`);
    await preparePlaceholders(workspace, this.s.protectedPaths);
    await this.d.pool.take(pool.spec);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const idle = (await this.d.incus.listInstances({ recursion: 1 })).map(memberOf).filter((m) => m?.key === pool.key && m.state === 'idle').map((m) => m!.name);
      if (idle.length >= this.d.pool.size || Date.now() >= deadline) return idle;
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The instance a cold launch makes (also what a warm member is turned into). */
  private specFor(name: string, workspace: string, slot: number, req: OpenRequest, persistent: boolean, tool: ToolDef, idmap: IdmapMode, session: string): InstanceCreate {
    const sshAgentSocket = this.s.sshForwardAgent ? this.d.host.env.SSH_AUTH_SOCK : undefined;
    return buildInstanceSpec({
      name,
      image: this.s.image,
      pool: this.s.pool,
      bridge: this.s.bridge,
      workspace,
      slot,
      kind: req.kind,
      tool: tool.name,
      persistent,
      session,
      profile: this.s.profile,
      ownerUid: this.d.host.uid,
      ownerHome: this.d.host.home,
      launcherPid: process.pid,
      idmap,
      protectedPaths: this.s.protectedPaths,
      mounts: this.s.mounts,
      nesting: this.s.nesting,
      now: new Date(),
      ...(hostTimezone() ? { timezone: hostTimezone()! } : {}),
      ...(sshAgentSocket ? { sshAgentSocket } : {}),
      ...(this.s.limits ? { limits: this.s.limits } : {}),
      ...(this.s.runtime ? { runtime: this.s.runtime } : {}),
      network: this.s.network,
      ...(this.s.guardScope ? { guardScope: this.s.guardScope } : {}),
      ...(this.s.monitor ? { monitor: this.s.monitor } : {}),
      ...(this.s.agent.stateDirs?.length ? { stateDirs: sessionStatePaths([], this.s.agent.stateDirs) } : {}),
      ...(guardSocketPath(this.d.host.env) !== DEFAULT_GUARD_SOCKET ? { guardSocket: guardSocketPath(this.d.host.env) } : {}),
    });
  }

  /**
   * The warm pool this launch may take from: its spec is the part of the cold
   * instance that cannot change while a container runs. Undefined when the
   * pool is off.
   */
  private poolFor(workspace: string, hash: string, req: OpenRequest, persistent: boolean, tool: ToolDef): { spec: PoolSpec; key: string } | undefined {
    if (!this.d.pool || this.d.pool.size <= 0) return undefined;
    // Not yet: the allowlist network tests failed against pooled sandboxes (allowed hosts refused,
    // fail-closed) and the cause is not settled (docs/pool.md): allowlist launches go cold.
    if (this.s.network.mode === 'allowlist') return undefined;
    // Members are made without the NIC anti-spoofing keys firewalld's MAC match needs, and those are fixed at creation.
    if (this.s.network.backend === 'firewalld') return undefined;
    const idmap = idmapMode(this.d.host.uid, this.d.host.gid, this.s.codeUid, this.s.codeGid, this.s.disableShift);
    const cold = this.specFor(containerName(this.s.prefix, workspace, 1), workspace, 1, req, persistent, tool, idmap, '');
    const spec = poolSpecOf(cold, { prefix: this.s.prefix, workspaceHash: hash, workspace, image: this.s.image, storagePool: this.s.pool, bridge: this.s.bridge });
    return { spec, key: poolKey(spec) };
  }

  /**
   * A member of this pool still booting is nearer to ready than a cold launch
   * would be: wait for it (bounded) rather than start another container.
   */
  private async waitForFilling(pool: { key: string }, mine: InstanceFull[], hash: string, requested: number | undefined): Promise<InstanceFull[]> {
    const wanted = requested !== undefined ? `${this.s.prefix}${hash}-${requested}` : undefined;
    const ours = (list: InstanceFull[]) => list.map((i) => memberOf(i)).filter((m) => m?.key === pool.key && (wanted === undefined || m.name === wanted));
    const deadline = Date.now() + Math.min(60, this.s.readyTimeoutSec) * 1000;
    let list = mine;
    while (Date.now() < deadline) {
      const m = ours(list);
      if (m.some((x) => x?.state === 'idle') || !m.some((x) => x?.state === 'filling')) return list;
      await new Promise((r) => setTimeout(r, 100));
      list = (await this.d.incus.listInstances({ recursion: 1 })).filter((i) => slotOf(this.s.prefix, hash, i.name) !== undefined);
    }
    return list;
  }

  private async create(name: string, workspace: string, slot: number, req: OpenRequest, persistent: boolean, tool: ToolDef, resumed?: SessionMetadata & { dir: string }, warm?: PoolSpec): Promise<SandboxInfo> {
    const idmap = idmapMode(this.d.host.uid, this.d.host.gid, this.s.codeUid, this.s.codeGid, this.s.disableShift);
    if (idmap.kind === 'raw') await this.ensureDelegated();
    await preparePlaceholders(workspace, this.s.protectedPaths);
    const spec = this.specFor(name, workspace, slot, req, persistent, tool, idmap, resumed?.session_id ?? randomUUID());
    // An ephemeral `coi run` with nothing to start: ready once fenced, and ended by the guard.
    const oneShot = warm !== undefined && req.kind === 'run' && !req.startTool;
    if (warm) {
      // The guard hands the member over, applies this sandbox's labels, limits and network
      // label in one update and re-fences it before answering: the same handshake as below.
      this.d.progress?.(`taking warm ${name} from the pool`);
      if (oneShot) spec.config = { ...spec.config, [LABELS.phase]: 'ready' };
      const taking = this.d.pool!.take(warm, name, adoption(spec), { endWithClient: oneShot });
      req.onTake?.(name);
      const r = await taking;
      if (!r.taken) throw new PoolMiss();
      if (r.end) this.warmEnds.set(name, r.end);
      this.d.progress?.(`fenced the network of ${name} (${r.mode ?? this.s.network.mode})`);
      for (const w of r.warnings ?? []) (this.d.warn ?? this.d.log.warn)(w);
      if (oneShot) {
        // What the take made of it, without reading it back: the command waits for nothing more.
        const info = sandboxFromInstance({ name, status: 'Running', config: spec.config ?? {}, devices: spec.devices ?? {} } as InstanceFull);
        if (info) return info;
      }
    } else {
      if (req.from) {
        spec.source = { type: 'copy', source: `${req.from.instance}/${req.from.snapshot}` };
        this.d.progress?.(`creating ${name} from snapshot ${req.from.snapshot} of ${req.from.instance}`);
      } else this.d.progress?.(`creating ${name} from ${this.s.image}`);
      try {
        await this.d.incus.createInstance(spec, { timeoutMs: 300_000 });
      } catch (e) {
        throw this.explainCreateError(e);
      }
    }
    try {
      // A warm member runs already, booted, and was fenced by the take.
      if (!warm) {
        if (req.from) await this.dropInherited(name, spec);
        await this.secureNetwork(name);
        await this.d.incus.setState(name, 'start', { timeoutMs: 120_000 }).catch((e: unknown) => {
          throw this.explainStartError(e, idmap);
        });
        await this.waitReady(name);
      }
      if (req.kind === 'shell') await this.autoCheckpoint(name);
      if (req.startTool) await this.launchAgent(name, workspace, tool, spec.config![LABELS.session]!, resumed);
      await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [LABELS.phase]: 'ready' } });
      return await this.get(name);
    } catch (e) {
      this.d.log.debug(`launch of ${name} failed, deleting it: ${toCoiError(e).message}`);
      await this.d.incus.deleteInstance(name, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Incus gives a copy every key and device of its source that the new
   * instance does not set (an old mount, a raw.idmap for another user, a device
   * added by hand). A branch must be exactly what a launch makes: keep only the
   * spec's, plus the volatile and image keys Incus manages.
   */
  private async dropInherited(name: string, spec: InstanceCreate): Promise<void> {
    const inst = (await this.d.incus.getInstance(name)) as InstanceFull & { architecture?: string; ephemeral?: boolean };
    const config: Record<string, string> = { ...(spec.config ?? {}) };
    for (const [k, v] of Object.entries(inst.config)) if (/^(volatile|image)\./.test(k)) config[k] = v;
    const extraKeys = Object.keys(inst.config).filter((k) => !(k in config));
    const extraDevices = Object.keys(inst.devices).filter((k) => !(k in (spec.devices ?? {})));
    if (extraKeys.length === 0 && extraDevices.length === 0) return;
    this.d.log.debug(`${name}: dropping what the copy inherited: ${[...extraKeys, ...extraDevices.map((d) => `device ${d}`)].join(', ')}`);
    await this.d.incus.run('PUT', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), {
      ...(inst.architecture ? { architecture: inst.architecture } : {}),
      config,
      devices: spec.devices ?? {},
      profiles: spec.profiles ?? inst.profiles,
      ephemeral: inst.ephemeral ?? false,
      description: spec.description ?? '',
    });
  }

  /** The fail-closed handshake: the guard fences the sandbox's network, or it does not start. */
  private async secureNetwork(name: string): Promise<void> {
    if (!this.d.secureNetwork) {
      throw new CoiError(ErrorCodes.GUARD_UNREACHABLE, `cannot start ${name}: the COI guard must fence its network first, and there is no guard to ask`, {
        remedy: { title: 'Start the guard', shell: 'sudo coi guard start', command: 'coi.setup' },
      });
    }
    this.d.progress?.(`fencing the network of ${name} (${this.s.network.mode})`);
    const r = await this.d.secureNetwork(name);
    for (const w of r.warnings) {
      if (this.d.warn) this.d.warn(w);
      else this.d.log.warn(w);
    }
  }

  private explainCreateError(e: unknown): CoiError {
    const err = toCoiError(e);
    if (/Image .* not found|not found/i.test(err.message) && err.message.includes('image')) {
      return new CoiError(ErrorCodes.NOT_FOUND, `the image ${this.s.image} does not exist`, { remedy: { title: 'Build or import it', shell: 'sudo coi setup' } });
    }
    return err;
  }

  private explainStartError(e: unknown, idmap: IdmapMode): CoiError {
    const err = toCoiError(e);
    if (idmap.kind === 'raw') {
      return new CoiError(err.code, `${err.message} — the workspace is mapped with raw.idmap for uid ${this.d.host.uid}; check that root may delegate it in /etc/subuid and /etc/subgid`, {
        remedy: { title: 'Let set-up delegate your ids', shell: 'sudo coi setup' },
      });
    }
    return err;
  }

  /** raw.idmap works only for ids delegated to root; ask the guard when they are not. */
  private async ensureDelegated(): Promise<void> {
    const { uid, gid } = this.d.host;
    const ok = (f: string, id: number) => subidDelegates(existsSync(f) ? readFileSync(f, 'utf8') : '', id);
    if (ok('/etc/subuid', uid) && ok('/etc/subgid', gid)) return;
    if (!this.d.allowIdmap) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `your uid ${uid} is not delegated for raw.idmap and the guard is not running to do it`, {
        remedy: { title: 'Run set-up', shell: 'sudo coi setup' },
      });
    }
    await this.d.allowIdmap(uid, gid);
  }

  /** Refuses when any profile the sandbox would use is privileged, naming the key and the profile. */
  private async refusePrivileged(): Promise<void> {
    const profile = await this.d.incus.get<Profile>(this.d.incus.url('/1.0/profiles/default'));
    const keys = privilegedKeys(profile.config);
    if (keys.length > 0) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `refusing to launch: the Incus profile "default" sets ${keys.map((k) => `${k}=true`).join(', ')}, which would give the agent root on the host`, {
        remedy: { title: 'Unset it', shell: `incus profile unset default ${keys[0]}` },
        details: { profile: 'default', keys },
      });
    }
  }

  /** Waits until the container has finished booting (see boot.ts). */
  private async waitReady(name: string): Promise<void> {
    await waitBooted(this.d.incus, name, this.s.readyTimeoutSec);
  }

  /**
   * `[snapshots] auto = true`: a checkpoint when a session (not a one-shot
   * `coi run`, whose sandbox is deleted after) starts, before the tool, so the user
   * can always go back to before the agent's run; older automatic ones beyond
   * `keep` are pruned. A checkpoint that fails fails the launch: the user asked
   * for a way back and would not have one.
   */
  private async autoCheckpoint(name: string): Promise<void> {
    const cfg = this.s.snapshots;
    if (!cfg?.auto) return;
    try {
      const taken = await takeSnapshot(this.d.incus, name, { auto: true });
      const pruned = await pruneCheckpoints(this.d.incus, name, cfg.keep);
      this.d.progress?.(`checkpoint ${taken.name} of ${name} taken${pruned.length ? `, pruned ${pruned.join(', ')}` : ''} (keeping the last ${cfg.keep})`);
    } catch (e) {
      const err = toCoiError(e);
      throw new CoiError(err.code, `[snapshots] auto = true, but the checkpoint of ${name} failed: ${err.message}`, {
        remedy: { title: 'Check the storage pool (or set [snapshots] auto = false)', shell: 'coi health' },
      });
    }
  }

  /**
   * After Incus started the sandbox again behind its session's back (a
   * snapshot restore): wait for the boot, then start its tool again.
   */
  async resumeSession(name: string): Promise<SandboxInfo> {
    const sb = await this.get(name);
    await this.waitReady(name);
    if (sb.kind === 'shell') {
      const tool = getTool(sb.tool || this.s.tool);
      // The restored home holds the tool's state as of the snapshot: continue from there.
      await this.launchAgent(name, sb.workspace, tool, sb.session, 'in-place');
    }
    return this.get(name);
  }

  /** The environment the agent sees: named host variables only, plus literal ones and ours. */
  agentEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const k of this.s.forwardEnv) {
      const v = this.d.host.env[k];
      if (v !== undefined) env[k] = v;
    }
    Object.assign(env, this.s.environment, {
      HOME: '/home/code',
      USER: 'code',
      LOGNAME: 'code',
      SHELL: '/bin/bash',
      TERM: 'xterm-256color',
      LANG: 'C.UTF-8',
      IS_SANDBOX: '1',
      PATH: '/home/code/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    });
    if (this.s.sshForwardAgent && this.d.host.env.SSH_AUTH_SOCK) env.SSH_AUTH_SOCK = '/tmp/ssh-agent.sock';
    return env;
  }

  private async execAsCode(name: string, argv: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}) {
    return this.d.incus.exec(name, argv, { user: this.s.codeUid, group: this.s.codeGid, cwd: WORKSPACE_MOUNT, env: opts.env ?? this.agentEnv(), timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  /**
   * Starts the tool in a detached tmux session. When the tool exits the
   * container powers off, which ends the session (and, for an ephemeral
   * sandbox, the guard then deletes it). Variables reach tmux through the exec
   * environment, never its command line, so they do not show in `ps`.
   */
  private async findSession(workspace: string, tool: ToolDef, id: true | string): Promise<SessionMetadata & { dir: string }> {
    const found = pickSession(await listSessions(this.d.host.home, tool.name), workspace, id === true ? undefined : id);
    if (!found) {
      throw new CoiError(ErrorCodes.NOT_FOUND, id === true ? `no saved ${tool.name} session for ${workspace}` : `no saved ${tool.name} session ${id} for ${workspace}`, {
        remedy: { title: 'List saved sessions', shell: 'coi list --all' },
      });
    }
    return found;
  }

  private launchContext(sessionId: string): LaunchContext {
    const a = this.s.agent;
    return {
      mode: a.permissionMode,
      home: CODE_HOME,
      contextFile: a.autoContext ? CONTEXT_FILE : '',
      sessionId,
      ...(a.binary ? { binary: a.binary } : {}),
      ...(a.customArgs ? { customArgs: a.customArgs } : {}),
      ...(a.customResumeArgs ? { customResumeArgs: a.customResumeArgs } : {}),
      ...(a.model ? { model: a.model } : {}),
    };
  }

  /**
   * Everything the agent needs before it starts: its saved state (resume), the
   * sandbox context and the tool's own settings for the permission mode, the
   * credentials files it needs from the host (only those, only if present), the
   * session's metadata on the host; then the tool itself in tmux.
   */
  private async launchAgent(name: string, workspace: string, tool: ToolDef, sessionId: string, resumed?: (SessionMetadata & { dir: string }) | 'in-place'): Promise<void> {
    const ctx = this.launchContext(sessionId);
    const binary = tool.binary(ctx);
    if (resumed && resumed !== 'in-place') {
      const n = await restoreState(this.d.incus, name, CODE_HOME, resumed.dir, this.s.codeUid, this.s.codeGid);
      this.d.progress?.(`restored ${n} file(s) of session ${sessionId.slice(0, 8)}`);
    }
    await this.writeAgentFiles(name, tool, ctx);
    await writeMetadata(sessionDir(this.d.host.home, tool.name, sessionId), {
      session_id: sessionId,
      container_name: name,
      workspace,
      tool: tool.name,
      profile: this.s.profile,
      persistent: this.s.persistent,
      saved_at: new Date().toISOString(),
      state_saved: resumed !== undefined,
    });
    await this.startTool(name, resumed && (await this.hasResumable(name, tool, ctx)) ? tool.resume(ctx) : tool.launch(ctx), binary, tool.env(ctx));
  }

  /** Whether the restored state holds something the tool can resume (see ToolDef.resumable). */
  private async hasResumable(name: string, tool: ToolDef, ctx: LaunchContext): Promise<boolean> {
    const test = tool.resumable?.(ctx);
    if (!test) return true;
    const r = await this.execAsCode(name, ['sh', '-c', test]);
    if (r.exitCode !== 0) this.d.progress?.(`nothing of ${tool.description} to resume in this session yet; starting it fresh`);
    return r.exitCode === 0;
  }

  private async writeAgentFiles(name: string, tool: ToolDef, ctx: LaunchContext): Promise<void> {
    const push = async (file: string, content: string, owner: 'code' | 'root', mode = 0o644) => {
      const uid = owner === 'code' ? this.s.codeUid : 0;
      const gid = owner === 'code' ? this.s.codeGid : 0;
      // Parent directories first, owned like the file (Incus does not create them).
      const parts = file.split('/').slice(1, -1);
      for (let i = 1; i <= parts.length; i++) {
        const dir = `/${parts.slice(0, i).join('/')}`;
        if (dir === CODE_HOME || !dir.startsWith(`${CODE_HOME}/`) && owner === 'code') continue;
        const exists = await this.d.incus.pullFile(name, dir).then(() => true, () => false);
        if (!exists) await this.d.incus.pushFile(name, dir, undefined, { type: 'directory', uid, gid, mode: 0o755 });
      }
      await this.d.incus.pushFile(name, file, Buffer.from(content), { uid, gid, mode });
    };
    if (ctx.contextFile) await push(ctx.contextFile, sandboxContext(this.facts(name, tool)), 'code');
    for (const f of tool.files(ctx)) {
      const existing = await this.d.incus.pullFile(name, f.path).then((r) => (r.type === 'file' ? r.content.toString('utf8') : undefined), () => undefined);
      const content = f.update(existing);
      if (content !== undefined) await push(f.path, content, f.owner);
    }
    for (const rel of tool.credentials) {
      const hostFile = path.join(this.d.host.home, rel);
      const st = await fs.lstat(hostFile).catch(() => undefined);
      if (!st?.isFile()) continue; // only the files the tool needs, only if the user has them
      await push(path.posix.join(CODE_HOME, rel), await fs.readFile(hostFile, 'utf8'), 'code', 0o600);
    }
  }

  private facts(name: string, tool: ToolDef): SandboxFacts {
    const a = this.s.agent;
    return {
      container: name,
      tool: tool.description,
      workspace: WORKSPACE_MOUNT,
      persistent: this.s.persistent,
      network: a.network,
      limits: a.limits,
      forwardedEnv: this.s.forwardEnv,
      readOnlyPaths: this.s.protectedPaths,
      sshAgent: this.s.sshForwardAgent,
      docker: this.s.nesting,
      permissionMode: a.permissionMode,
      profile: this.s.profile,
      profileContexts: a.profileContexts,
    };
  }

  /** Saves the session's state to the host (running or stopped container). Best effort: never blocks an ending. */
  async saveSession(name: string): Promise<void> {
    const sb = await this.get(name).catch(() => undefined);
    if (!sb || !sb.session || sb.kind !== 'shell') return;
    let tool: ToolDef;
    try {
      tool = getTool(sb.tool);
    } catch {
      return;
    }
    const dir = sessionDir(this.d.host.home, tool.name, sb.session);
    try {
      await saveState(this.d.incus, name, CODE_HOME, sessionStatePaths(tool.stateDirs, sb.stateDirs ?? []), dir);
      await writeMetadata(dir, { session_id: sb.session, container_name: name, workspace: sb.workspace, tool: tool.name, profile: sb.profile, persistent: sb.persistent, saved_at: new Date().toISOString(), state_saved: true });
    } catch (e) {
      this.d.log.warn(`could not save session ${sb.session} of ${name}: ${toCoiError(e).message}`);
    }
  }

  private async startTool(name: string, argv: string[], binary: string, toolEnv: Record<string, string> = {}): Promise<void> {
    const check = await this.execAsCode(name, ['sh', '-c', `command -v ${shellQuote(binary)}`]);
    if (check.exitCode !== 0) {
      throw new CoiError(ErrorCodes.NOT_FOUND, `${binary} is not installed in the image ${this.s.image}`, {
        remedy: { title: 'Build an image with it, or pick another tool', shell: 'coi build' },
      });
    }
    const session = tmuxSession(name);
    const has = await this.execAsCode(name, ['tmux', 'has-session', '-t', session]);
    if (has.exitCode === 0) return;
    const command = `${argv.map(shellQuote).join(' ')}; sudo -n /sbin/poweroff`;
    const r = await this.execAsCode(name, ['tmux', 'new-session', '-d', '-s', session, '-x', '200', '-y', '50', '-c', WORKSPACE_MOUNT, command], { env: { ...this.agentEnv(), ...toolEnv } });
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `tmux could not start ${binary}: ${r.stderr.trim()}`);
    let last = '';
    for (let i = 0; i < 60; i++) {
      const probe = await this.execAsCode(name, ['tmux', 'has-session', '-t', session]);
      if (probe.exitCode === 0) return;
      last = `exit ${probe.exitCode}: ${probe.stderr.trim()}`;
      this.d.log.debug(`has-session ${session}: ${last}`);
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `the tmux session of ${name} ended at once (${last}); is ${binary} working in the image?`);
  }

  /** Runs a command in a fresh sandbox, streaming its output; the sandbox is deleted after. */
  async run(workspace: string, argv: string[], io: { stdin?: Readable; stdout: Writable; stderr: Writable; signal?: AbortSignal }): Promise<number> {
    if (argv.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, 'coi run needs a command: coi run -- CMD ARGS… or coi run "shell command"');
    const command = { user: this.s.codeUid, group: this.s.codeGid, cwd: WORKSPACE_MOUNT, env: this.agentEnv() };
    // A warm member's exec is set up while the guard hands it over (the command waits for the take).
    let held: HeldExec | undefined;
    const onTake = (name: string) => {
      held?.abandon();
      held = holdExec(this.d.incus, name, argv, command);
    };
    const sb = await this.open({ workspace, kind: 'run', startTool: false, onTake }).catch((e: unknown) => {
      held?.abandon();
      throw e;
    });
    this.d.progress?.(`running in ${sb.name}`);
    const guardEnds = this.warmEnds.get(sb.name);
    this.warmEnds.delete(sb.name);
    const streams = { stdout: io.stdout, stderr: io.stderr, ...(io.stdin ? { stdin: io.stdin } : {}), ...(io.signal ? { signal: io.signal } : {}) };
    try {
      // Only the take that made this sandbox (a miss may end in a cold sandbox of the same name).
      const ready = guardEnds && held?.name === sb.name ? held : (held?.abandon(), undefined);
      if (ready) {
        try {
          return await ready.release(streams);
        } catch (e) {
          if (!(e instanceof ExecNotStarted)) throw e;
          this.d.log.debug(`${e.message}: running the command afresh`);
        }
      }
      return await execStream(this.d.incus, sb.name, argv, { ...command, ...streams });
    } finally {
      if (guardEnds?.()) {
        // Warm: closing the connection the guard watches hands it the deletion (it would do the
        // same had we died); the user waits for nothing more.
        this.d.progress?.(`the guard deletes ${sb.name}`);
      } else if (this.d.pool && this.d.pool.size > 0) {
        // Warm, but the guard's connection was lost (a restarted guard): Incus is asked to stop it
        // (the request is queued before we exit) and the guard's reaper deletes the stopped sandbox.
        this.d.progress?.(`stopping ${sb.name}; the guard deletes it`);
        await this.d.incus
          .call('PUT', this.d.incus.url(`/1.0/instances/${encodeURIComponent(sb.name)}/state`), { action: 'stop', force: true })
          .catch(() => this.d.incus.deleteInstance(sb.name, { force: true }))
          .catch((e: unknown) => this.d.log.warn(`could not delete ${sb.name}: ${toCoiError(e).message}`));
      } else {
        await this.d.incus.deleteInstance(sb.name, { force: true }).catch((e: unknown) => this.d.log.warn(`could not delete ${sb.name}: ${toCoiError(e).message}`));
      }
    }
  }

  /**
   * Attaches a terminal to the agent's tmux session. The session also ends
   * when the sandbox is deleted or stopped under it: Incus then leaves the
   * exec's websocket open and its operation running, so we watch the
   * instance's lifecycle events and end the session ourselves.
   */
  async attach(name: string, io: { input: Readable; output: Writable; width: number; height: number }): Promise<AttachSession> {
    const sb = await this.get(name);
    if (sb.state === 'frozen') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is frozen by the guard`, { remedy: { title: 'Review the alert, then resume it', shell: `coi resume ${name}` } });
    if (sb.state !== 'running') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is ${sb.state}`, { remedy: { title: 'Start a session', shell: 'coi shell' } });
    const end = new AbortController();
    let endedBy: 'deleted' | 'stopped' | undefined;
    let grace: NodeJS.Timeout | undefined;
    const events = this.d.incus.events({ types: ['lifecycle'], onLog: (m) => this.d.log.debug(m) });
    events.on('event', (e) => {
      const what = instanceEnded(e, name);
      if (!what || end.signal.aborted) return;
      if (endedBy !== 'deleted') endedBy = what;
      // A stop usually ends the exec by itself (tmux dies with the container); a delete never does.
      if (what === 'deleted') end.abort();
      else grace ??= setTimeout(() => end.abort(), ATTACH_STOP_GRACE_MS);
    });
    const stopWatching = () => {
      if (grace) clearTimeout(grace);
      events.close();
    };
    try {
      // Without events the session still works; it just cannot notice a delete.
      await events.ready(5_000).catch((e: unknown) => this.d.log.warn(`attach ${name}: no Incus events, a delete under the session will go unnoticed: ${toCoiError(e).message}`));
      // Gone between the look above and the subscription: no event will come.
      if (!(await this.d.incus.instanceExists(name))) throw new CoiError(ErrorCodes.NOT_FOUND, `${name} was deleted`);
      const session = await execInteractive(this.d.incus, name, ['tmux', 'attach-session', '-t', tmuxSession(name)], {
        user: this.s.codeUid,
        group: this.s.codeGid,
        cwd: WORKSPACE_MOUNT,
        env: { ...this.agentEnv(), TERM: sanitizeTerm(this.d.host.env.TERM) },
        width: io.width,
        height: io.height,
        input: io.input,
        output: io.output,
        end: end.signal,
      });
      return { resize: (w, h) => session.resize(w, h), done: session.done.finally(stopWatching), endedBy: () => (end.signal.aborted ? endedBy : undefined) };
    } catch (e) {
      stopWatching();
      throw e;
    }
  }

  /**
   * Graceful stop within the timeout, then force. An ephemeral sandbox is then
   * deleted; a persistent one is kept, stopped, for the next `coi shell`
   * (`coi kill` deletes it).
   */
  async shutdown(name: string): Promise<'deleted' | 'stopped'> {
    const sb = await this.get(name);
    if (!sb.persistent) await this.hold(name);
    const st = await this.d.incus.getState(name);
    if (st.status === 'Frozen') await this.d.incus.setState(name, 'unfreeze').catch(() => undefined);
    if (st.status !== 'Stopped') {
      await this.d.incus.setState(name, 'stop', { timeoutSec: this.s.shutdownTimeoutSec, timeoutMs: (this.s.shutdownTimeoutSec + 30) * 1000 }).catch(async () => {
        await this.d.incus.setState(name, 'stop', { force: true });
      });
    }
    if (sb.persistent) return 'stopped';
    await this.saveSession(name);
    await this.remove(name);
    return 'deleted';
  }

  /**
   * Marks a sandbox as being handled by this coi process (its pid), so the
   * guard's reaper does not race us; the hold dies with the process.
   */
  private async hold(name: string): Promise<void> {
    await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [LABELS.hold]: String(process.pid) } }).catch(() => undefined);
  }

  /** Deletes an instance; already gone counts as done. */
  private async remove(name: string): Promise<void> {
    try {
      await this.d.incus.deleteInstance(name, { force: true });
    } catch (e) {
      if (await this.d.incus.instanceExists(name).catch(() => true)) throw e;
    }
  }

  async kill(name: string): Promise<void> {
    await this.get(name);
    await this.hold(name);
    await this.forceStop(name);
    await this.saveSession(name);
    await this.remove(name);
  }

  /**
   * Force-stops, also a sandbox the guard froze. A stop normally takes a frozen
   * container down without letting it run again (SIGKILL before the thaw), so
   * that is tried first. But when Incus's record and the cgroup disagree (the
   * guard froze the cgroup and Incus refused to record it, "already frozen"),
   * the stop can wait on frozen tasks for minutes: then it is thawed and
   * stopped at once: a kill was asked for, and a moment's run is the price of
   * it ever ending.
   */
  private async forceStop(name: string): Promise<void> {
    try {
      await this.d.incus.setState(name, 'stop', { force: true, timeoutMs: 15_000 });
      return;
    } catch (e) {
      const st = await this.d.incus.getState(name).catch(() => undefined);
      if (!st || st.status === 'Stopped') return;
      if (st.status !== 'Frozen' && !frozenBehindIncus(st.status, name)) {
        this.d.log.warn(`${name}: force stop failed (${toCoiError(e).message}); deleting it anyway`);
        return;
      }
      this.d.log.warn(`${name}: a frozen sandbox did not stop within 15 s; thawing it to stop it`);
    }
    await this.d.incus.setState(name, 'unfreeze', { timeoutMs: 15_000 }).catch(() => undefined);
    await this.d.incus.setState(name, 'stop', { force: true, timeoutMs: 30_000 }).catch(() => undefined);
  }

  /** Stops the sandbox without deleting it: only for persistent ones (an ephemeral one is deleted when stopped). */
  async persist(name: string): Promise<SandboxInfo> {
    await this.get(name);
    await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [LABELS.persistent]: 'true' } });
    return this.get(name);
  }

  /**
   * Thaws a sandbox the guard (or a person) froze. The guard freezes through
   * the cgroup first and tells Incus after; if it could not tell Incus, Incus
   * reports running and would refuse to unfreeze, so it is asked to freeze
   * (which it accepts on a frozen cgroup) and then to unfreeze.
   */
  async resume(name: string): Promise<SandboxInfo> {
    const sb = await this.get(name);
    if (sb.state === 'running' && frozenBehindIncus('Running', name)) {
      this.d.log.debug(`${name}: frozen in its cgroup while Incus says running; having Incus freeze it first`);
      await this.d.incus.setState(name, 'freeze');
    } else if (sb.state !== 'frozen') throw new CoiError(ErrorCodes.INVALID_INPUT, `${name} is ${sb.state}, not frozen`);
    await this.d.incus.setState(name, 'unfreeze');
    return this.get(name);
  }

  /**
   * What `coi clean` removes: stopped ephemeral sandboxes, and half-made ones
   * whose launcher died. Persistent stopped sandboxes are the user's to keep.
   */
  async cleanable(): Promise<{ name: string; reason: string }[]> {
    const instances = await this.d.incus.listInstances();
    const members = instances.map(memberOf).filter((m): m is Member => m !== undefined);
    const out: { name: string; reason: string }[] = poolCleanable(members, this.s.prefix, pidAlive);
    for (const sb of await this.list()) {
      if (out.some((o) => o.name === sb.name)) continue;
      if (sb.phase === 'creating' && !(sb.launcherPid && pidAlive(sb.launcherPid))) out.push({ name: sb.name, reason: 'launch was interrupted' });
      else if (sb.state === 'stopped' && !sb.persistent) out.push({ name: sb.name, reason: 'stopped ephemeral sandbox' });
    }
    return out;
  }

  async clean(dryRun: boolean): Promise<{ name: string; reason: string; error?: string }[]> {
    const victims: { name: string; reason: string; error?: string }[] = await this.cleanable();
    if (dryRun) return victims;
    for (const v of victims) {
      // An interrupted launch may still have its create operation running in Incus: retry a little.
      let last: unknown;
      for (let i = 0; i < 20; i++) {
        try {
          await this.remove(v.name);
          last = undefined;
          break;
        } catch (e) {
          last = e;
          await new Promise((r) => setTimeout(r, 250 * Math.min(i + 1, 4)));
        }
      }
      if (last) v.error = toCoiError(last).message;
    }
    return victims;
  }

  async tmuxSend(name: string, text: string): Promise<void> {
    await this.get(name);
    const r = await this.execAsCode(name, ['tmux', 'send-keys', '-t', tmuxSession(name), '-l', text]);
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `tmux send-keys failed: ${r.stderr.trim()}`);
    await this.execAsCode(name, ['tmux', 'send-keys', '-t', tmuxSession(name), 'Enter']);
  }

  async tmuxCapture(name: string): Promise<string> {
    await this.get(name);
    const r = await this.execAsCode(name, ['tmux', 'capture-pane', '-p', '-t', tmuxSession(name)]);
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `no tmux session in ${name}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  async tmuxList(): Promise<{ name: string; sessions: string[] }[]> {
    const out: { name: string; sessions: string[] }[] = [];
    for (const sb of (await this.list()).filter((s) => s.state === 'running')) {
      const r = await this.execAsCode(sb.name, ['tmux', 'list-sessions', '-F', '#{session_name}']);
      out.push({ name: sb.name, sessions: r.exitCode === 0 ? r.stdout.split('\n').filter(Boolean) : [] });
    }
    return out;
  }

  /** The instance behind a sandbox, for commands that need Incus details. */
  instance(name: string): Promise<InstanceFull> {
    return this.d.incus.getInstance(name);
  }
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Terminals the image may not know (kitty, ghostty…) become xterm-256color. */
export function sanitizeTerm(term: string | undefined): string {
  if (!term || !/^[A-Za-z0-9._+-]{1,64}$/.test(term)) return 'xterm-256color';
  return /^(xterm|screen|tmux|vt100|vt220|linux|rxvt|dumb)(-|$)/.test(term) && !/kitty|ghostty/.test(term) ? term : 'xterm-256color';
}

export function hostTimezone(): string | undefined {
  try {
    const link = readlinkSafe('/etc/localtime');
    const m = link ? /zoneinfo\/(.+)$/.exec(link) : null;
    if (m) return m[1];
    const tz = readFileSync('/etc/timezone', 'utf8').trim();
    return /^[A-Za-z0-9_+\/-]{1,64}$/.test(tz) ? tz : undefined;
  } catch {
    return undefined;
  }
}

function readlinkSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

export function hostIdentity(env: NodeJS.ProcessEnv = process.env): HostIdentity {
  return { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000, home: env.HOME || os.homedir(), env };
}
