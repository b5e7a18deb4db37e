/**
 * A minimal `snapshot/list` and `snapshot/create` for the extension's Sandboxes
 * view. The snapshots feature brings the full set (restore, delete, branch,
 * stateful snapshots, limits) and replaces this file.
 */
import { CoiError, ErrorCodes } from '../errors';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { SnapshotCreate, SnapshotInfoWire, SnapshotList } from '../protocol/methods';
import type { Router } from '../protocol/rpc';
import { managerByName } from '../sandbox/factory';

interface IncusSnapshot {
  name: string;
  created_at: string;
  stateful: boolean;
}

/** Incus refuses "/" and most punctuation; we accept what the CLI accepts without quoting. */
export const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** A name for a snapshot nobody named: snap-20250101-120000 (UTC). */
export function defaultSnapshotName(now: Date): string {
  const iso = now.toISOString(); // 2025-01-01T12:00:00.000Z
  return `snap-${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
}

function toWire(s: IncusSnapshot): SnapshotInfoWire {
  // Incus names snapshots "<instance>/<snapshot>" in some answers.
  return { name: s.name.includes('/') ? s.name.slice(s.name.lastIndexOf('/') + 1) : s.name, createdAt: s.created_at, stateful: !!s.stateful };
}

export function registerSnapshotMethods(router: Router, incus: IncusClient, env: NodeJS.ProcessEnv, log: Log): void {
  // Only our sandboxes: `get` refuses an instance without the COI labels.
  const ours = (name: string) => managerByName({ env, incus, log, warn: () => undefined }).get(name);
  const base = (name: string) => `/1.0/instances/${encodeURIComponent(name)}/snapshots`;
  router
    .onRequest(SnapshotList, async ({ name }) => {
      await ours(name);
      const list = await incus.get<IncusSnapshot[]>(incus.url(base(name), { recursion: 1 }));
      return { snapshots: list.map(toWire) };
    })
    .onRequest(SnapshotCreate, async ({ name, snapshot }) => {
      await ours(name);
      const snap = snapshot || defaultSnapshotName(new Date());
      if (!SNAPSHOT_NAME.test(snap)) {
        throw new CoiError(ErrorCodes.INVALID_INPUT, `"${snap}" is not a snapshot name: use letters, digits, ".", "_" and "-", starting with a letter or digit`);
      }
      await incus.run('POST', incus.url(base(name)), { name: snap, stateful: false }, { timeoutMs: 300_000 });
      const created = await incus.get<IncusSnapshot>(incus.url(`${base(name)}/${encodeURIComponent(snap)}`));
      return { snapshot: toWire(created) };
    });
}
