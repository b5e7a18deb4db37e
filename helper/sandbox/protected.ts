/**
 * Protected paths: files in the workspace that the host runs later (git hooks,
 * git config, husky, VS Code tasks…). Inside the sandbox each is a read-only
 * bind over the writable workspace, so an agent cannot plant code that runs on
 * the host. A path that does not exist yet gets an empty placeholder first (or
 * the agent could create it); a symlink anywhere on the way is refused (the
 * bind would follow it out of the workspace).
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../errors';
import { DEFAULT_PROTECTED_PATHS } from '../config/schema';
import type { Devices } from '../incus/types';

// The default list is the configuration's default: one list, in the schema.
export { DEFAULT_PROTECTED_PATHS };

/** Paths that are files when we must create them; everything else is a directory. */
const FILE_PLACEHOLDERS = new Set(['.git/config', '.git/config.worktree', '.git/info/attributes', '.claude/settings.json', '.claude/settings.local.json', '.codex/config.toml']);

export function validateProtectedPath(p: string): string {
  const norm = path.posix.normalize(p).replace(/\/+$/, '');
  if (!p || path.posix.isAbsolute(p) || norm === '.' || norm.startsWith('..') || norm.split('/').includes('..')) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `protected path "${p}" must be relative to the workspace and stay inside it`);
  }
  if (/[\0\n]/.test(p)) throw new CoiError(ErrorCodes.INVALID_INPUT, 'protected paths may not contain NUL or newline characters');
  return norm;
}

/** The effective list: defaults or the configured list, plus additions, minus writable hooks when opted out. */
export function protectedPathList(opts: { paths?: string[]; additional?: string[]; writableHooks?: boolean }): string[] {
  const list = [...(opts.paths ?? DEFAULT_PROTECTED_PATHS), ...(opts.additional ?? [])].map(validateProtectedPath);
  const unique = [...new Set(list)];
  return opts.writableHooks ? unique.filter((p) => p !== '.git/hooks') : unique;
}

/** Device name for a protected path: "protect-" and the path with every other character made safe. */
export function protectDeviceName(p: string): string {
  return `protect-${p.replace(/[^A-Za-z0-9_-]/g, '_')}`.slice(0, 60);
}

export function protectedDevices(workspace: string, mountPath: string, paths: string[], shift: boolean): Devices {
  const devices: Devices = {};
  for (const p of paths) {
    const d: Record<string, string> = { type: 'disk', source: path.join(workspace, p), path: path.posix.join(mountPath, p), readonly: 'true' };
    if (shift) d.shift = 'true';
    devices[protectDeviceName(p)] = d;
  }
  return devices;
}

/**
 * Makes every protected path exist on the host, refusing symlinks. Components
 * are checked with lstat and created one at a time with exclusive flags, so a
 * symlink swapped in concurrently makes creation fail rather than escape.
 * Another launch (or `coi pool warm`) of the same workspace may be creating the
 * same placeholders at the same moment: a component that appears between the
 * lstat and the create is checked again as one that was there.
 */
export async function preparePlaceholders(workspace: string, paths: string[]): Promise<string[]> {
  const created: string[] = [];
  for (const rel of paths) {
    const parts = rel.split('/');
    let cur = workspace;
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i]!);
      const last = i === parts.length - 1;
      const file = last && FILE_PLACEHOLDERS.has(rel);
      let st = await lstatOrNone(cur);
      if (!st) {
        if (await createExclusive(cur, file, rel.endsWith('.json'))) {
          created.push(path.relative(workspace, cur));
          continue;
        }
        st = await lstatOrNone(cur);
        if (!st) throw new CoiError(ErrorCodes.INVALID_INPUT, `cannot protect ${rel}: ${cur} appeared and vanished while it was being created`);
      }
      if (st.isSymbolicLink()) {
        throw new CoiError(ErrorCodes.INVALID_INPUT, `refusing to protect ${path.join(workspace, rel)}: ${cur} is a symbolic link, which a read-only mount would follow out of the workspace`, {
          remedy: { title: 'Replace the link with a real file or directory, or remove it' },
        });
      }
      if (!last && !st.isDirectory()) {
        throw new CoiError(ErrorCodes.INVALID_INPUT, `cannot protect ${rel}: ${cur} is not a directory`);
      }
    }
  }
  return created;
}

function lstatOrNone(p: string): Promise<Stats | undefined> {
  return fs.lstat(p).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
}

/** Creates a placeholder; false when something already took its name. */
async function createExclusive(p: string, file: boolean, json: boolean): Promise<boolean> {
  try {
    if (!file) {
      await fs.mkdir(p, { mode: 0o755 });
      return true;
    }
    const fh = await fs.open(p, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o644);
    try {
      // An empty settings file would be invalid JSON to the tool that reads it.
      if (json) await fh.writeFile('{}\n');
    } finally {
      await fh.close();
    }
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
}
