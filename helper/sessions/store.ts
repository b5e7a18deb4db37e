/**
 * Saved sessions: `~/.coi/sessions-<tool>/<id>/metadata.json` plus the tool's
 * state under `home/`. Written at launch (metadata) and at the end of the
 * session (metadata + state), also when the container was powered off from
 * inside: Incus's file API reads a stopped container's files.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import type { IncusClient } from '../incus/client';
export { safeStatePath, sessionStatePaths } from './paths';

export const sessionMetadata = z.object({
  session_id: z.string().uuid(),
  container_name: z.string(),
  workspace: z.string(),
  tool: z.string(),
  profile: z.string(),
  persistent: z.boolean(),
  saved_at: z.string(),
  state_saved: z.boolean().default(false),
});
export type SessionMetadata = z.infer<typeof sessionMetadata>;

export function sessionsDir(home: string, tool: string): string {
  return path.join(home, '.coi', `sessions-${tool}`);
}

export function sessionDir(home: string, tool: string, id: string): string {
  return path.join(sessionsDir(home, tool), id);
}

export async function writeMetadata(dir: string, meta: SessionMetadata, owner?: { uid: number; gid: number }): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, '.metadata.json.tmp');
  await fs.writeFile(tmp, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
  await fs.rename(tmp, path.join(dir, 'metadata.json'));
  if (owner) {
    // Written by the root guard into the owner's home: the owner must own what it made.
    for (const p of [path.dirname(dir), dir, path.join(dir, 'metadata.json')]) await fs.lchown(p, owner.uid, owner.gid).catch(() => undefined);
  }
}

/** Every readable session of a tool (or all tools), newest first. */
export async function listSessions(home: string, tool?: string): Promise<(SessionMetadata & { dir: string })[]> {
  const coi = path.join(home, '.coi');
  const toolDirs = (await fs.readdir(coi).catch(() => [] as string[])).filter((d) => d.startsWith('sessions-') && (!tool || d === `sessions-${tool}`));
  const out: (SessionMetadata & { dir: string })[] = [];
  for (const td of toolDirs) {
    for (const id of await fs.readdir(path.join(coi, td)).catch(() => [] as string[])) {
      const dir = path.join(coi, td, id);
      const text = await fs.readFile(path.join(dir, 'metadata.json'), 'utf8').catch(() => undefined);
      if (!text) continue;
      try {
        out.push({ ...sessionMetadata.parse(JSON.parse(text)), dir });
      } catch {
        // A damaged file is skipped, never fatal.
      }
    }
  }
  return out.sort((a, b) => b.saved_at.localeCompare(a.saved_at));
}

/** The session to resume: the given id, or the newest of this workspace. Never one of another workspace. */
export function pickSession<T extends SessionMetadata>(sessions: T[], workspace: string, id?: string): T | undefined {
  const mine = sessions.filter((s) => s.workspace === workspace);
  if (id) return mine.find((s) => s.session_id === id || s.session_id.startsWith(id));
  return mine[0];
}

/** Copies the tool's state out of the container (running or stopped) into `<dir>/home/`. */
export async function saveState(incus: IncusClient, container: string, home: string, paths: string[], dir: string, owner?: { uid: number; gid: number }): Promise<number> {
  const dest = path.join(dir, 'home');
  await fs.rm(dest, { recursive: true, force: true });
  await fs.mkdir(dest, { recursive: true, mode: 0o700 });
  let n = 0;
  for (const rel of paths) n += await pullTree(incus, container, path.posix.join(home, rel), path.join(dest, rel));
  // A path that was missing is fine; a container that went away mid-save is not a saved session.
  if (!(await incus.instanceExists(container))) throw new Error(`${container} disappeared while its session was being saved`);
  if (owner) await chownTree(dir, owner, 64);
  return n;
}

/** Pushes saved state back into a container's home, owned by the agent's user. */
export async function restoreState(incus: IncusClient, container: string, home: string, dir: string, uid = 1000, gid = 1000): Promise<number> {
  const src = path.join(dir, 'home');
  return pushTree(incus, container, src, home, uid, gid, true);
}

async function pullTree(incus: IncusClient, container: string, remote: string, local: string): Promise<number> {
  let got;
  try {
    got = await incus.pullFile(container, remote);
  } catch {
    return 0; // absent, a symlink or a special file: nothing to keep
  }
  if (got.type === 'directory') {
    await fs.mkdir(local, { recursive: true, mode: 0o700 });
    let n = 0;
    for (const e of got.entries) {
      // Names come from inside the container: never let one climb out.
      if (e === '.' || e === '..' || e.includes('/') || e.includes('\0')) continue;
      n += await pullTree(incus, container, path.posix.join(remote, e), path.join(local, e));
    }
    return n;
  }
  await fs.mkdir(path.dirname(local), { recursive: true, mode: 0o700 });
  await fs.writeFile(local, got.content, { mode: 0o600 });
  return 1;
}

async function pushTree(incus: IncusClient, container: string, local: string, remote: string, uid: number, gid: number, isRoot = false): Promise<number> {
  const st = await fs.lstat(local).catch(() => undefined);
  if (!st || st.isSymbolicLink()) return 0;
  if (st.isDirectory()) {
    if (!isRoot) await incus.pushFile(container, remote, undefined, { type: 'directory', uid, gid, mode: 0o700 });
    let n = 0;
    for (const e of await fs.readdir(local)) n += await pushTree(incus, container, path.join(local, e), path.posix.join(remote, e), uid, gid);
    return n;
  }
  if (!st.isFile()) return 0;
  await incus.pushFile(container, remote, await fs.readFile(local), { uid, gid, mode: 0o600 });
  return 1;
}

async function chownTree(p: string, owner: { uid: number; gid: number }, depth: number): Promise<void> {
  await fs.lchown(p, owner.uid, owner.gid).catch(() => undefined);
  if (depth <= 0) return;
  const entries = await fs.readdir(p, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const q = path.join(p, e.name);
    if (e.isDirectory()) await chownTree(q, owner, depth - 1);
    else await fs.lchown(q, owner.uid, owner.gid).catch(() => undefined);
  }
}
