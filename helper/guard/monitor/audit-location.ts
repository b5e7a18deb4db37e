/**
 * Where a sandbox's audit log lives: in its OWNER's `~/.coi/audit/` (the uid
 * in `user.coi.owner-uid`, home from /etc/passwd), so the person whose agent
 * it was reads it with `coi audit` without sudo, next to the rest of their
 * `~/.coi`, and it outlives the sandbox (a killed sandbox is deleted; its log
 * is the evidence). The root guard writes it; every directory and file it
 * creates there is chowned to the owner, 0700/0600.
 *
 * The home comes from /etc/passwd, never from an environment: the guard has
 * none of the user's, and `coi audit` looks in the same place whatever $HOME
 * says. An owner without a passwd entry or without a home directory (a
 * service uid, a home on NFS with root squash) gets `/var/lib/coi/audit/<uid>/`
 * instead, also chowned to them. `COI_AUDIT_DIR` overrides both, for the guard
 * and the CLI alike (one directory for every owner: tests, special set-ups).
 *
 * The guard is root writing into a directory the owner controls, so it never
 * follows a symlink there: each directory it uses must be a real directory
 * owned by the owner or root, and files are opened O_NOFOLLOW (see audit.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';

export const FALLBACK_AUDIT_ROOT = '/var/lib/coi/audit';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export function parsePasswd(text: string): Map<number, PasswdEntry> {
  const out = new Map<number, PasswdEntry>();
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || !/^\d+$/.test(f[2] ?? '') || !/^\d+$/.test(f[3] ?? '')) continue;
    const uid = Number(f[2]);
    // The first entry for a uid wins, as getpwuid does.
    if (!out.has(uid)) out.set(uid, { name: f[0] ?? '', uid, gid: Number(f[3]), home: f[5] ?? '' });
  }
  return out;
}

export interface AuditLocation {
  dir: string;
  /** Who must own the log files (and the directories from `ownedFrom` down). */
  owner: { uid: number; gid: number };
  /** The topmost directory that is the owner's (created 0700, chowned); above it, root's (0755). */
  ownedFrom?: string;
  /** How it was chosen, for `coi monitor` and the guard's log. */
  source: 'override' | 'home' | 'fallback';
}

export interface LocateOptions {
  env?: NodeJS.ProcessEnv;
  passwd?: Map<number, PasswdEntry>;
  isDir?: (p: string) => boolean;
  fallbackRoot?: string;
}

function readPasswd(): Map<number, PasswdEntry> {
  try {
    return parsePasswd(fs.readFileSync('/etc/passwd', 'utf8'));
  } catch {
    return new Map();
  }
}

function isRealDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Pure given its options: the audit directory of the user `uid`. */
export function auditLocation(uid: number, opts: LocateOptions = {}): AuditLocation {
  const env = opts.env ?? process.env;
  const passwd = opts.passwd ?? readPasswd();
  const isDir = opts.isDir ?? isRealDir;
  const entry = passwd.get(uid);
  const gid = entry?.gid ?? uid;
  if (env.COI_AUDIT_DIR) return { dir: path.resolve(env.COI_AUDIT_DIR), owner: { uid, gid }, source: 'override' };
  if (entry && entry.home.startsWith('/') && entry.home !== '/' && isDir(entry.home)) {
    const home = path.resolve(entry.home);
    return { dir: path.join(home, '.coi', 'audit'), owner: { uid, gid }, ownedFrom: path.join(home, '.coi'), source: 'home' };
  }
  const dir = path.join(opts.fallbackRoot ?? FALLBACK_AUDIT_ROOT, String(uid));
  return { dir, owner: { uid, gid }, ownedFrom: dir, source: 'fallback' };
}

/**
 * Every directory a user's audit logs may be in, best first: what the guard
 * would choose for them, the fallback, and `$HOME/.coi/audit` when $HOME
 * points elsewhere (older logs, a CLI run with another HOME).
 */
export function auditSearchDirs(uid: number, opts: LocateOptions & { home?: string } = {}): string[] {
  const out = [auditLocation(uid, opts).dir, path.join(opts.fallbackRoot ?? FALLBACK_AUDIT_ROOT, String(uid))];
  if (opts.home) out.push(path.join(opts.home, '.coi', 'audit'));
  return [...new Set(out)];
}

/**
 * Makes the location's directory exist for the guard (root) to write in.
 * Missing components from `ownedFrom` down are created 0700 and chowned to
 * the owner; above it, 0755 and root's. An existing component that is a
 * symlink (other than a root-owned system one such as /var/run), not a
 * directory, or owned by neither root nor the owner is refused.
 */
export function ensureAuditDir(loc: AuditLocation): void {
  const parts = path.resolve(loc.dir).split(path.sep).filter(Boolean);
  const ownedFrom = loc.ownedFrom ? path.resolve(loc.ownedFrom) : undefined;
  const asRoot = process.getuid?.() === 0;
  let cur: string = path.sep;
  let owned = false;
  for (const part of parts) {
    cur = path.join(cur, part);
    if (cur === ownedFrom) owned = true;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(cur);
    } catch {
      st = undefined;
    }
    if (!st) {
      fs.mkdirSync(cur, { mode: owned ? 0o700 : 0o755 });
      if (owned && asRoot) fs.chownSync(cur, loc.owner.uid, loc.owner.gid);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (st.uid !== 0) throw refusal(cur, 'is a symlink');
      continue;
    }
    if (!st.isDirectory()) throw refusal(cur, 'is not a directory');
    if (asRoot && st.uid !== 0 && st.uid !== loc.owner.uid) throw refusal(cur, `belongs to uid ${st.uid}, neither root nor the owner ${loc.owner.uid}`);
  }
}

function refusal(p: string, why: string): CoiError {
  return new CoiError(ErrorCodes.NOT_PERMITTED, `refusing to write an audit log under ${p}: it ${why}`, {
    remedy: { title: 'Remove it, or set COI_AUDIT_DIR for the guard' },
  });
}
