/**
 * Image versions: every build is published under `<name>-YYYYMMDD-HHMMSS`, then
 * the main alias `<name>` is moved to it (one Incus call, so a launch sees the
 * old image or the new one, never neither). Older versions beyond the last N
 * are pruned. Pure: the plans; builder.ts carries them out.
 */

export const DEFAULT_KEEP = 3;

const STAMP = /^(\d{8})-(\d{6})(?:-(\d+))?$/;

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** `coi` at 2026-11-27 05:30:00 UTC → `coi-20261127-053000`; a suffix when that name is taken. */
export function versionAlias(name: string, now: Date, taken: ReadonlySet<string>): string {
  const stamp = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}-${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  let alias = `${name}-${stamp}`;
  for (let i = 2; taken.has(alias); i++) alias = `${name}-${stamp}-${i}`;
  return alias;
}

/** Whether `alias` is a version of `name` (and not, say, `coi-base` of `coi`). */
export function isVersionOf(name: string, alias: string): boolean {
  return alias.startsWith(`${name}-`) && STAMP.test(alias.slice(name.length + 1));
}

/** Sort key of a version alias: its stamp, then its suffix as a number. */
function versionKey(name: string, alias: string): [string, number] {
  const m = STAMP.exec(alias.slice(name.length + 1))!;
  return [`${m[1]}${m[2]}`, Number(m[3] ?? 1)];
}

export interface AliasEntry {
  name: string;
  target: string;
}

export interface PrunePlan {
  /** Version aliases to delete. */
  aliases: string[];
  /** Images left with no alias at all once those are gone. */
  images: string[];
}

/**
 * Keeps the newest `keep` versions of `name`, plus whatever version the main
 * alias points at; an image is deleted only when no alias of any name still
 * points at it.
 */
export function prunePlan(name: string, all: readonly AliasEntry[], keep: number): PrunePlan {
  const main = all.find((a) => a.name === name)?.target;
  const versions = all
    .filter((a) => isVersionOf(name, a.name))
    .sort((a, b) => {
      const [sa, na] = versionKey(name, a.name);
      const [sb, nb] = versionKey(name, b.name);
      return sa === sb ? nb - na : sa < sb ? 1 : -1;
    });
  const kept = new Set(versions.slice(0, Math.max(1, keep)).map((a) => a.name));
  const drop = versions.filter((a) => !kept.has(a.name) && a.target !== main);
  const dropped = new Set(drop.map((a) => a.name));
  const stillAliased = new Set(all.filter((a) => !dropped.has(a.name)).map((a) => a.target));
  const images = [...new Set(drop.map((a) => a.target))].filter((fp) => !stillAliased.has(fp));
  return { aliases: drop.map((a) => a.name), images };
}

export interface ImageEntry {
  fingerprint: string;
  aliases: string[];
  properties: Record<string, string>;
}

/**
 * Images a build imported or published and never aliased because the build
 * died: they carry our build id and builder pid, have no alias, and their
 * builder is gone. (A builder still alive may be about to alias its image.)
 */
export function orphanImages(images: readonly ImageEntry[], alive: (pid: number) => boolean): string[] {
  return images
    .filter((i) => i.aliases.length === 0 && i.properties['coi.build-id'] !== undefined)
    .filter((i) => {
      const pid = Number(i.properties['coi.build-pid'] ?? 0);
      return !pid || !alive(pid);
    })
    .map((i) => i.fingerprint);
}

/** The image names `coi build custom` accepts: an Incus alias we can also version. */
export function validImageName(name: string): boolean {
  return /^[a-z0-9][a-z0-9._-]{0,45}$/i.test(name) && !STAMP.test(name.split('-').slice(-2).join('-'));
}
