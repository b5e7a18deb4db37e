/**
 * Every coi guard's tables as `nft list ruleset` prints them, grouped by
 * scope, with the pid of the guard that wrote them (each table's comment).
 *
 * A scoped guard (a test's) whose process dies keeps its tables: the rules
 * must outlive a crash, so nothing removes them on the way out. On a machine
 * that runs the tests again and again they pile up, and each holds one of
 * the 31 mark tags (marks.ts) until no new guard can start. A scope whose
 * guard is dead and which no instance is labelled with any more fences
 * nothing: its tables can go. One with instances keeps them (they are those
 * sandboxes' only fence) until the sandboxes are gone.
 */
import { FILTER_FAMILY, FILTER_TABLE, INGRESS_FAMILY, INGRESS_TABLE } from './names';
import { TAG_SHIFT } from './marks';

/** The comment each of a guard's tables carries: who wrote it. */
export const OWNER_COMMENT = 'coi guard pid ';

export function ownerComment(pid: number): string {
  return `${OWNER_COMMENT}${pid}`;
}

export interface ScopeTables {
  /** '' for the host's guard. */
  scope: string;
  tables: Array<{ family: string; name: string }>;
  /** The writing guard's pid; undefined for tables from before owners were recorded. */
  ownerPid?: number;
  /** Mark tags the scope's vmaps use. */
  tags: Set<number>;
}

function scopeOf(family: string, name: string): string | undefined {
  const base = family === FILTER_FAMILY ? FILTER_TABLE : family === INGRESS_FAMILY ? INGRESS_TABLE : undefined;
  if (!base) return undefined;
  if (name === base) return '';
  return name.startsWith(`${base}_`) ? name.slice(base.length + 1) : undefined;
}

/** The guard tables in a ruleset listing, by scope. */
export function guardTablesIn(rulesetText: string): Map<string, ScopeTables> {
  const out = new Map<string, ScopeTables>();
  let current: ScopeTables | undefined;
  let family = '';
  for (const line of rulesetText.split('\n')) {
    const t = /^table (\S+) (\S+) \{/.exec(line);
    if (t) {
      family = t[1]!;
      const scope = scopeOf(family, t[2]!);
      current = undefined;
      if (scope === undefined) continue;
      current = out.get(scope) ?? { scope, tables: [], tags: new Set() };
      current.tables.push({ family, name: t[2]! });
      out.set(scope, current);
      continue;
    }
    if (!current) continue;
    const c = /^\tcomment "([^"]*)"/.exec(line);
    if (c && c[1]!.startsWith(OWNER_COMMENT)) {
      const pid = Number(c[1]!.slice(OWNER_COMMENT.length));
      if (Number.isInteger(pid) && pid > 0) current.ownerPid = pid;
      continue;
    }
    if (family !== FILTER_FAMILY) continue;
    for (const m of line.matchAll(/(0x[0-9a-f]{8}) : jump /g)) current.tags.add(Number(m[1]) >>> TAG_SHIFT);
  }
  return out;
}

/**
 * The scopes whose tables fence nothing and nobody maintains: not the host's,
 * not our own, no live guard wrote them and no instance is in the scope.
 */
export function staleScopes(found: ReadonlyMap<string, ScopeTables>, o: { ownScope: string; liveGuard: (pid: number) => boolean; scopesInUse: ReadonlySet<string> }): ScopeTables[] {
  return [...found.values()].filter(
    (s) => s.scope !== '' && s.scope !== o.ownScope && !(s.ownerPid !== undefined && o.liveGuard(s.ownerPid)) && !o.scopesInUse.has(s.scope),
  );
}

/** Tags the vmaps of every other guard's tables use (theirs, and those of guards from before tags). */
export function tagsInUse(found: ReadonlyMap<string, ScopeTables>, ownScope: string): Set<number> {
  const used = new Set<number>();
  for (const s of found.values()) if (s.scope !== ownScope) for (const t of s.tags) used.add(t);
  return used;
}

/** A script deleting these scopes' tables (each line a no-op if the table went meanwhile). */
export function renderRemoveScopes(scopes: readonly ScopeTables[]): string {
  const lines: string[] = [];
  for (const s of scopes) for (const t of s.tables) lines.push(`table ${t.family} ${t.name}`, `delete table ${t.family} ${t.name}`);
  return `${lines.join('\n')}\n`;
}
