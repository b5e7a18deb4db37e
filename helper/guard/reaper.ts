/**
 * Deletes sandboxes whose session is over, from the guard, so it happens even
 * when no coi process and no editor is left: an ephemeral sandbox that stopped
 * (the tool exited, or it was powered off from inside), and a `coi run`
 * sandbox whose coi process died. A sandbox held by a live coi process (a
 * snapshot restore stops and restarts it) is left alone.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { lifecycleOf } from '../incus/events';
import type { InstanceFull, RawEvent } from '../incus/types';
import type { Log } from '../log';
import { SandboxInfo, sandboxFromInstance } from '../sandbox/labels';
import { pidAlive } from '../sandbox/lock';
import { homeOfUid } from '../host/groups';
import { saveState, sessionDir, sessionStatePaths, writeMetadata } from '../sessions/store';
import { getTool } from '../tools/registry';

export function reapReason(sb: SandboxInfo, launcherAlive: (pid: number) => boolean): string | undefined {
  if (sb.phase !== 'ready') return undefined; // a launch in progress owns it
  if (sb.holdPid !== undefined && launcherAlive(sb.holdPid)) return undefined; // stopped on purpose, about to restart
  if (sb.state === 'stopped' && !sb.persistent) return 'its session ended';
  if (sb.kind === 'run' && sb.launcherPid !== undefined && !launcherAlive(sb.launcherPid)) return 'the coi run that owned it is gone';
  return undefined;
}

/**
 * The home the launcher recorded, if it really is that uid's directory (we
 * write there as root: a label must not be able to point us elsewhere), else
 * the uid's home from /etc/passwd.
 */
export async function ownersHome(recorded: string | undefined, uid: number): Promise<string | undefined> {
  for (const candidate of [recorded, homeOfUid(uid)]) {
    if (!candidate || !path.isAbsolute(candidate)) continue;
    const st = await fs.lstat(candidate).catch(() => undefined);
    if (st?.isDirectory() && st.uid === uid) return candidate;
  }
  return undefined;
}

export class Reaper {
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly incus: IncusClient,
    private readonly log: Log,
    private readonly alive: (pid: number) => boolean = pidAlive,
    /** Which instances this guard looks after (a test's guard: only its scope's); all managed ones by default. */
    private readonly owns: (i: InstanceFull) => boolean = () => true,
    /** Sandboxes someone else is ending (the monitor's kill, forensics first): left alone. */
    private readonly held: (name: string) => boolean = () => false,
  ) {}

  /** Checks one instance after a lifecycle event about it. */
  onEvent(e: RawEvent): void {
    const lc = lifecycleOf(e);
    if (!lc || !/^instance-(stopped|shutdown)$/.test(lc.action)) return;
    const m = /^\/1\.0\/instances\/([^/?]+)/.exec(lc.source);
    if (m) void this.check(decodeURIComponent(m[1]!));
  }

  /** On start, and after losing events: look at everything once. */
  async sweep(): Promise<void> {
    const all = await this.incus.listInstances().catch(() => []);
    for (const i of all.filter(this.owns)) {
      const sb = sandboxFromInstance(i);
      if (sb) await this.reapIf(sb);
    }
  }

  /**
   * Keeps the session before the container goes: its tool state into the
   * owner's ~/.coi/sessions-<tool>/<id>/, owned by the owner. Best effort: a
   * failure is logged and never keeps an ended sandbox alive.
   */
  private async saveSession(sb: SandboxInfo): Promise<void> {
    if (sb.kind !== 'shell' || !sb.session || sb.ownerUid === undefined) return;
    const home = await ownersHome(sb.ownerHome, sb.ownerUid);
    if (!home) {
      this.log.warn(`not saving session ${sb.session} of ${sb.name}: no home of uid ${sb.ownerUid} to write to`);
      return;
    }
    let stateDirs: string[];
    try {
      stateDirs = sessionStatePaths(getTool(sb.tool).stateDirs, sb.stateDirs ?? []);
    } catch {
      return;
    }
    const owner = { uid: sb.ownerUid, gid: sb.ownerUid };
    const dir = sessionDir(home, sb.tool, sb.session);
    try {
      await saveState(this.incus, sb.name, '/home/code', stateDirs, dir, owner);
      await writeMetadata(dir, { session_id: sb.session, container_name: sb.name, workspace: sb.workspace, tool: sb.tool, profile: sb.profile, persistent: sb.persistent, saved_at: new Date().toISOString(), state_saved: true }, owner);
      this.log.info(`saved session ${sb.session} of ${sb.name} to ${dir}`);
    } catch (e) {
      this.log.warn(`could not save session ${sb.session} of ${sb.name}: ${toCoiError(e).message}`);
    }
  }

  private async check(name: string): Promise<void> {
    const inst = await this.incus.getInstance(name).catch(() => undefined);
    const sb = inst && this.owns(inst) ? sandboxFromInstance(inst) : undefined;
    if (sb) await this.reapIf(sb);
  }

  private async reapIf(sb: SandboxInfo): Promise<void> {
    const why = reapReason(sb, this.alive);
    if (!why || this.inFlight.has(sb.name) || this.held(sb.name)) return;
    this.inFlight.add(sb.name);
    try {
      await this.saveSession(sb);
      await this.incus.deleteInstance(sb.name, { force: true });
      this.log.info(`deleted ${sb.name}: ${why}`);
    } catch (e) {
      this.log.warn(`could not delete ${sb.name} (${why}): ${toCoiError(e).message}`);
    } finally {
      this.inFlight.delete(sb.name);
    }
  }
}
