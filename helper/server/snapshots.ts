/** The snapshot methods of the helper's JSON-RPC server: thin, onto SnapshotService. */
import { CoiError, ErrorCodes } from '../errors';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { SnapshotBranch, SnapshotCreate, SnapshotDelete, SnapshotList, SnapshotRestore } from '../protocol/methods';
import type { Router } from '../protocol/rpc';
import { FactoryDeps, snapshotService } from '../sandbox/factory';

export function registerSnapshotMethods(router: Router, incus: IncusClient, env: NodeJS.ProcessEnv, log: Log): void {
  const svc = (warnings: string[] = []) => snapshotService({ env, incus, log, warn: (m) => warnings.push(m) } satisfies FactoryDeps);
  const summary = (s: { name: string; createdAt: string; stateful: boolean }) => ({ name: s.name, createdAt: s.createdAt, stateful: s.stateful });
  router
    .onRequest(SnapshotList, async ({ name }) => ({ snapshots: (await svc().list(name)).map(summary) }))
    .onRequest(SnapshotCreate, async ({ name, snapshot }) => ({ snapshot: summary(await svc().create(name, snapshot)) }))
    .onRequest(SnapshotRestore, async ({ name, snapshot, dryRun }) => {
      const s = svc();
      if (dryRun) {
        const plan = await s.plan(name, snapshot);
        const sandbox = await s.sandbox(name);
        return { plan, restored: false, restarted: false, sandbox };
      }
      const outcome = await s.restore(name, snapshot);
      return { plan: outcome.plan, restored: true, restarted: outcome.restarted, sandbox: outcome.sandbox };
    })
    .onRequest(SnapshotDelete, async ({ name, snapshot, all }) => {
      const s = svc();
      if (all) return { deleted: await s.deleteAll(name) };
      if (snapshot === undefined) throw new CoiError(ErrorCodes.INVALID_INPUT, 'give either snapshot or all: true');
      await s.delete(name, snapshot);
      return { deleted: [snapshot] };
    })
    .onRequest(SnapshotBranch, async ({ name, snapshot }) => {
      const warnings: string[] = [];
      const sandbox = await svc(warnings).branch(name, snapshot);
      return { sandbox, warnings };
    });
}
