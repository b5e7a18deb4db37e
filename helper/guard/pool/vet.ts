/**
 * What the guard checks before it creates pool members on a client's word.
 * It creates them as root, with the client's disks mounted: a client may pool
 * only a real workspace (the same rules as a launch) and only paths it owns
 * (root may pool any but the system's). The config keys are vetted by the
 * spec's schema already.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';
import { homeOfUid } from '../../host/groups';
import type { Adoption } from '../../pool/protocol';
import { POOL_LABELS, PoolSpec } from '../../pool/spec';
import { resolveWorkspace } from '../../sandbox/manager';
import { workspaceHash } from '../../sandbox/naming';

export async function vetPoolSpec(spec: PoolSpec, peer: { uid: number; gids: number[] }): Promise<void> {
  const refuse = (why: string) => new CoiError(ErrorCodes.NOT_PERMITTED, `the guard will not pool this workspace: ${why}`);
  let real: string;
  try {
    real = resolveWorkspace(spec.workspace, homeOfUid(peer.uid) ?? '/nonexistent');
  } catch (e) {
    throw refuse((e as Error).message);
  }
  if (real !== spec.workspace) throw refuse(`${spec.workspace} is not a real path (it resolves to ${real})`);
  if (workspaceHash(real) !== spec.workspaceHash) throw refuse('the workspace hash does not match the workspace');
  const idmap = /^uid (\d+) \d+\ngid (\d+) \d+$/.exec(spec.config['raw.idmap'] ?? '');
  if (idmap && peer.uid !== 0 && (Number(idmap[1]) !== peer.uid || !peer.gids.includes(Number(idmap[2])))) throw refuse(`uid ${peer.uid} may only map its own ids`);
  for (const [name, d] of Object.entries(spec.disks)) {
    if (path.resolve(d.source) !== d.source || path.posix.resolve(d.path) !== d.path) throw refuse(`disk ${name}: paths must be absolute and normal`);
    const st = await fs.lstat(d.source).catch(() => undefined);
    if (!st) throw refuse(`disk ${name}: ${d.source} does not exist`);
    if (st.isSymbolicLink()) throw refuse(`disk ${name}: ${d.source} is a symbolic link`);
    if (peer.uid !== 0 && st.uid !== peer.uid) throw refuse(`disk ${name}: ${d.source} is not yours`);
  }
}

/**
 * What a launch may change on a member it takes: labels (user.coi.*, but not
 * the pool's own), the keys the member already has with the same values, and
 * the SSH agent's proxy to a socket the client owns.
 */
export async function vetAdoption(adopt: Adoption, spec: PoolSpec, peer: { uid: number }): Promise<void> {
  const refuse = (why: string) => new CoiError(ErrorCodes.NOT_PERMITTED, `the guard will not hand this warm container over: ${why}`);
  for (const [k, v] of Object.entries(adopt.config)) {
    if (Object.values(POOL_LABELS).includes(k as (typeof POOL_LABELS)[keyof typeof POOL_LABELS])) throw refuse(`${k} is the guard's`);
    if (k.startsWith('user.coi.')) continue;
    if (spec.config[k] !== v) throw refuse(`${k} cannot change on a running container (it is part of the pool's settings)`);
  }
  for (const [name, d] of Object.entries(adopt.devices)) {
    const keys = Object.keys(d).sort().join(',');
    if (d.type !== 'proxy' || keys !== 'bind,connect,gid,listen,mode,type,uid' || d.bind !== 'container' || d.listen !== 'unix:/tmp/ssh-agent.sock') throw refuse(`device ${name} is not the SSH agent's proxy`);
    const sock = /^unix:(\/[^\0\n]+)$/.exec(d.connect ?? '')?.[1];
    if (!sock) throw refuse(`device ${name} connects to no unix socket`);
    const st = await fs.lstat(sock).catch(() => undefined);
    if (!st?.isSocket()) throw refuse(`device ${name}: ${sock} is not a socket`);
    if (peer.uid !== 0 && st.uid !== peer.uid) throw refuse(`device ${name}: ${sock} is not yours`);
  }
}
