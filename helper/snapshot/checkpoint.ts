/**
 * Taking a snapshot and pruning automatic checkpoints: the Incus side, shared
 * by `coi snapshot create` and by a launch with `[snapshots] auto = true`.
 */
import type { IncusClient } from '../incus/client';
import { autoSnapshotName, autoToPrune, defaultSnapshotName, uniqueName } from './names';

export interface TakenSnapshot {
  name: string;
  createdAt: string;
  stateful: boolean;
}

/** Takes a snapshot; without a name, `snap-…` (or `auto-…`), made unique within the sandbox. */
export async function takeSnapshot(incus: IncusClient, instance: string, opts: { name?: string; auto?: boolean; now?: Date } = {}): Promise<TakenSnapshot> {
  let name = opts.name;
  if (!name) {
    const now = opts.now ?? new Date();
    const taken = new Set((await incus.listSnapshots(instance)).map((s) => s.name));
    name = uniqueName(opts.auto ? autoSnapshotName(now) : defaultSnapshotName(now), taken);
  }
  await incus.createSnapshot(instance, name);
  const s = await incus.getSnapshot(instance, name);
  return { name: s.name, createdAt: s.created_at, stateful: s.stateful };
}

/** Deletes the automatic checkpoints beyond the newest `keep`; returns their names. */
export async function pruneCheckpoints(incus: IncusClient, instance: string, keep: number): Promise<string[]> {
  const victims = autoToPrune((await incus.listSnapshots(instance)).map((s) => ({ name: s.name, createdAt: s.created_at })), keep);
  for (const v of victims) await incus.deleteSnapshot(instance, v);
  return victims;
}
