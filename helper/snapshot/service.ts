/**
 * Snapshots of sandboxes: the core the `coi snapshot` commands and the
 * `snapshot/*` JSON-RPC methods both call. A thin layer over Incus snapshots
 * that knows what a sandbox is: it refuses what is not a COI sandbox, restores
 * a running sandbox without the guard reaping it, gives the sandbox back its
 * own labels and its tool after a restore, and branches through the normal
 * launch path.
 *
 * Workspace files are never in a snapshot: the workspace is a host directory
 * mounted into the sandbox, so restore neither brings back nor removes them.
 */
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import type { InstanceSnapshot } from '../incus/types';
import type { Log } from '../log';
import { LABELS, SandboxInfo } from '../sandbox/labels';
import type { SandboxManager } from '../sandbox/manager';
import { takeSnapshot } from './checkpoint';
import { isAuto, validateSnapshotName } from './names';
import { RestorePlan, restorePlan } from './plan';

export interface SnapshotDetails {
  sandbox: string;
  name: string;
  createdAt: string;
  stateful: boolean;
  /** An automatic checkpoint (`[snapshots] auto`), pruned beyond `keep`. */
  auto: boolean;
  /** Bytes, when the storage driver reports it. */
  size?: number;
  expiresAt?: string;
}

export interface RestoreOutcome {
  plan: RestorePlan;
  restarted: boolean;
  sandbox: SandboxInfo;
}

export interface SnapshotDeps {
  incus: IncusClient;
  log: Log;
  /** Resolves sandboxes by name (no workspace config needed). */
  sandboxes: SandboxManager;
  /** The manager of a workspace's effective configuration: what restarts a tool and launches a branch. */
  launcher: (workspace: string) => Promise<SandboxManager>;
  /** The pid that holds a sandbox while a restore stops it (this process). */
  pid?: number;
}

export function details(sandbox: string, s: InstanceSnapshot): SnapshotDetails {
  const d: SnapshotDetails = { sandbox, name: s.name, createdAt: s.created_at, stateful: s.stateful, auto: isAuto(s.name) };
  if (typeof s.size === 'number' && s.size >= 0) d.size = s.size;
  if (s.expires_at && !s.expires_at.startsWith('0001-')) d.expiresAt = s.expires_at;
  return d;
}

export class SnapshotService {
  constructor(private readonly d: SnapshotDeps) {}

  /** The sandbox, by name (an error when it is not a COI sandbox). */
  sandbox(name: string): Promise<SandboxInfo> {
    return this.d.sandboxes.get(name);
  }

  /** The snapshots of one sandbox, oldest first. */
  async list(name: string): Promise<SnapshotDetails[]> {
    await this.d.sandboxes.get(name);
    return (await this.d.incus.listSnapshots(name)).map((s) => details(name, s)).sort((a, b) => Date.parse(a.createdAt) - Date.parse(b.createdAt));
  }

  /** The snapshots of every sandbox. */
  async listAll(): Promise<SnapshotDetails[]> {
    const out: SnapshotDetails[] = [];
    for (const sb of await this.d.sandboxes.list()) out.push(...(await this.list(sb.name).catch(() => [])));
    return out;
  }

  async create(name: string, snapshot?: string): Promise<SnapshotDetails> {
    const sb = await this.d.sandboxes.get(name);
    if (snapshot !== undefined) validateSnapshotName(snapshot);
    if (sb.phase === 'creating') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is still being launched; snapshot it once it is up`);
    try {
      const taken = await takeSnapshot(this.d.incus, name, snapshot ? { name: snapshot } : {});
      return this.info(name, taken.name);
    } catch (e) {
      const err = toCoiError(e);
      if (err.code === ErrorCodes.ALREADY_EXISTS) throw new CoiError(err.code, `${name} already has a snapshot "${snapshot}"`, { remedy: { title: 'Choose another name, or delete it first', shell: `coi snapshot delete ${snapshot} -c ${name}` } });
      throw err;
    }
  }

  async info(name: string, snapshot: string): Promise<SnapshotDetails> {
    await this.d.sandboxes.get(name);
    try {
      return details(name, await this.d.incus.getSnapshot(name, snapshot));
    } catch (e) {
      throw this.notFound(e, name, snapshot);
    }
  }

  async delete(name: string, snapshot: string): Promise<void> {
    await this.d.sandboxes.get(name);
    try {
      await this.d.incus.deleteSnapshot(name, snapshot);
    } catch (e) {
      throw this.notFound(e, name, snapshot);
    }
  }

  async deleteAll(name: string): Promise<string[]> {
    const names = (await this.list(name)).map((s) => s.name);
    for (const s of names) await this.d.incus.deleteSnapshot(name, s);
    return names;
  }

  /** What a restore would do, without doing it. */
  async plan(name: string, snapshot: string): Promise<RestorePlan> {
    const sb = await this.d.sandboxes.get(name);
    const snaps = (await this.d.incus.listSnapshots(name)).map((s) => ({ name: s.name, createdAt: s.created_at, stateful: s.stateful }));
    return restorePlan(sb, snaps, snapshot);
  }

  /**
   * Restores a sandbox. A running one is held (so the guard does not reap it
   * while it is down), stopped, restored and started by Incus in one
   * operation; then it gets its current labels back (the snapshot's are older:
   * another session, perhaps not yet persistent) and its tool is started again.
   */
  async restore(name: string, snapshot: string): Promise<RestoreOutcome> {
    const plan = await this.plan(name, snapshot);
    if (plan.refused) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `not restoring ${name}: ${plan.refused.reason}`, plan.refused.remedy ? { remedy: plan.refused.remedy } : {});
    }
    const before = await this.d.incus.getInstance(name);
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(before.config)) if (k.startsWith('user.coi.') && k !== LABELS.hold) labels[k] = v;
    const holder = String(this.d.pid ?? process.pid);
    await this.d.incus.patchConfig(name, { [LABELS.hold]: holder });
    try {
      await this.d.incus.restoreSnapshot(name, snapshot);
    } catch (e) {
      await this.d.incus.patchConfig(name, { [LABELS.hold]: '' }).catch(() => undefined);
      throw e;
    }
    // The restored config is the snapshot's: put back the sandbox's own labels, without the hold.
    const restored = await this.d.incus.getInstance(name);
    const patch: Record<string, string> = { ...labels, [LABELS.hold]: '' };
    for (const k of Object.keys(restored.config)) if (k.startsWith('user.coi.') && !(k in patch)) patch[k] = '';
    await this.d.incus.patchConfig(name, patch);
    if (!plan.restart) return { plan, restarted: false, sandbox: await this.d.sandboxes.get(name) };
    const sb = await this.d.sandboxes.get(name);
    const mgr = await this.d.launcher(sb.workspace);
    try {
      return { plan, restarted: true, sandbox: await mgr.resumeSession(name) };
    } catch (e) {
      const err = toCoiError(e);
      throw new CoiError(err.code, `${name} was restored to ${snapshot} and started, but its session did not come back: ${err.message}`, {
        remedy: err.remedy ?? { title: 'Attach and look, or start the tool again', shell: `coi attach ${name}` },
      });
    }
  }

  /** A new slot of the same workspace, started from a snapshot, through the normal launch path. */
  async branch(name: string, snapshot: string): Promise<SandboxInfo> {
    const src = await this.d.sandboxes.get(name);
    await this.info(name, snapshot);
    if (!src.workspace) throw new CoiError(ErrorCodes.INVALID_INPUT, `${name} records no workspace; cannot branch it`);
    const mgr = await this.d.launcher(src.workspace);
    return mgr.open({ workspace: src.workspace, kind: 'shell', startTool: true, from: { instance: name, snapshot, persistent: src.persistent } });
  }

  private notFound(e: unknown, name: string, snapshot: string): CoiError {
    const err = toCoiError(e);
    if (err.code !== ErrorCodes.NOT_FOUND) return err;
    return new CoiError(ErrorCodes.NOT_FOUND, `${name} has no snapshot "${snapshot}"`, { remedy: { title: 'List its snapshots', shell: `coi snapshot list -c ${name}` } });
  }
}
