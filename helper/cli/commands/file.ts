import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';
import type { IncusClient } from '../../incus/client';
import { Command, parseFlags } from '../command';
import { managerFor } from '../sandboxes';

const usage = 'coi file push [-r] LOCAL NAME:/PATH  |  coi file pull [-r] NAME:/PATH LOCAL';

/** "coi-1a2b3c4d-1:/workspace/x" → name and absolute path. */
export function parseRemote(spec: string): { name: string; path: string } {
  const i = spec.indexOf(':');
  const name = i > 0 ? spec.slice(0, i) : '';
  const p = i > 0 ? spec.slice(i + 1) : '';
  if (!name || !p.startsWith('/')) throw new CoiError(ErrorCodes.INVALID_INPUT, `"${spec}" is not NAME:/absolute/path\nusage: ${usage}`);
  return { name, path: path.posix.normalize(p) };
}

export const fileCommand: Command = {
  name: 'file',
  summary: 'Copy files into or out of a sandbox (files are owned by its code user)',
  usage,
  async run(args, ctx) {
    const [action, ...rest] = args;
    const { values, positionals } = parseFlags(this, rest, { recursive: { type: 'boolean', short: 'r' } }, true);
    if ((action !== 'push' && action !== 'pull') || positionals.length !== 2) throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
    const mgr = managerFor(ctx);
    const incus = ctx.incus();
    if (action === 'push') {
      const remote = parseRemote(positionals[1]!);
      await mgr.get(remote.name);
      const n = await push(incus, remote.name, path.resolve(positionals[0]!), remote.path, values.recursive === true, mgr.settings.codeUid, mgr.settings.codeGid);
      ctx.out(`pushed ${n} file(s) to ${remote.name}:${remote.path}\n`);
    } else {
      const remote = parseRemote(positionals[0]!);
      await mgr.get(remote.name);
      const n = await pull(incus, remote.name, remote.path, path.resolve(positionals[1]!), values.recursive === true);
      ctx.out(`pulled ${n} file(s) from ${remote.name}:${remote.path}\n`);
    }
    return 0;
  },
};

async function push(incus: IncusClient, name: string, local: string, remote: string, recursive: boolean, uid: number, gid: number): Promise<number> {
  const st = await fs.lstat(local);
  if (st.isSymbolicLink()) return 0; // links could point anywhere on the host; never follow them in
  if (st.isDirectory()) {
    if (!recursive) throw new CoiError(ErrorCodes.INVALID_INPUT, `${local} is a directory: use -r`);
    await incus.pushFile(name, remote, undefined, { type: 'directory', uid, gid, mode: st.mode & 0o777 });
    let n = 0;
    for (const e of await fs.readdir(local)) n += await push(incus, name, path.join(local, e), path.posix.join(remote, e), true, uid, gid);
    return n;
  }
  if (!st.isFile()) return 0;
  await incus.pushFile(name, remote, await fs.readFile(local), { uid, gid, mode: st.mode & 0o777 });
  return 1;
}

async function pull(incus: IncusClient, name: string, remote: string, local: string, recursive: boolean): Promise<number> {
  const got = await incus.pullFile(name, remote);
  if (got.type === 'directory') {
    if (!recursive) throw new CoiError(ErrorCodes.INVALID_INPUT, `${remote} is a directory: use -r`);
    await fs.mkdir(local, { recursive: true });
    let n = 0;
    for (const e of got.entries) {
      // Names come from inside the container: never let one climb out of the target folder.
      if (e === '.' || e === '..' || e.includes('/') || e.includes('\0')) continue;
      n += await pull(incus, name, path.posix.join(remote, e), path.join(local, e), true);
    }
    return n;
  }
  await fs.writeFile(local, got.content, { mode: got.mode & 0o777 });
  return 1;
}
