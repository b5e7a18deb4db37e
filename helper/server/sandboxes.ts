/**
 * The sandbox methods of the helper's JSON-RPC server, and the notifications
 * that keep clients live: every Incus lifecycle event about one of our
 * instances is re-read from Incus and pushed as `$/sandbox/changed`.
 */
import type { MessageConnection } from 'vscode-jsonrpc';
import { toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { IncusEventStream, lifecycleOf } from '../incus/events';
import type { Log } from '../log';
import { listProfiles, loadConfig } from '../config';
import { SandboxChanged, SandboxClean, SandboxKill, SandboxList, SandboxOpen, SandboxOptions, SandboxPersist, SandboxResume, SandboxShutdown } from '../protocol/methods';
import { notify, Router } from '../protocol/rpc';
import { FactoryDeps, launchManager, managerByName } from '../sandbox/factory';
import { sandboxFromInstance } from '../sandbox/labels';
import { hostIdentity, resolveWorkspace } from '../sandbox/manager';
import { getTool, toolNames } from '../tools/registry';
import { DEFAULT_PREFIX } from '../sandbox/naming';

export function registerSandboxMethods(router: Router, incus: IncusClient, env: NodeJS.ProcessEnv, log: Log): void {
  const deps = (warnings: string[] = []): FactoryDeps => ({ env, incus, log, warn: (m) => warnings.push(m) });
  router
    .onRequest(SandboxList, async () => ({ sandboxes: await managerByName(deps()).list() }))
    .onRequest(SandboxOptions, async ({ workspace }) => {
      const home = hostIdentity(env).home;
      const real = resolveWorkspace(workspace, home);
      const loaded = await loadConfig({ home, workspace: real, env });
      const profiles = await listProfiles({ home, workspace: real, env });
      return {
        tools: toolNames().map((name) => ({ name, description: getTool(name).description })),
        profiles: profiles.map((p) => ({ name: p.name, scope: p.scope, ...(p.description ? { description: p.description } : {}) })),
        defaults: { tool: loaded.config.tool.name, persistent: loaded.config.container.persistent, profile: loaded.profile.name },
      };
    })
    .onRequest(SandboxOpen, async (p) => {
      const warnings: string[] = [];
      const mgr = await launchManager(deps(warnings), p.workspace, {
        ...(p.tool !== undefined ? { tool: p.tool } : {}),
        ...(p.image !== undefined ? { image: p.image } : {}),
        ...(p.persistent !== undefined ? { persistent: p.persistent } : {}),
        ...(p.profile !== undefined ? { profile: p.profile } : {}),
      });
      const sandbox = await mgr.open({ workspace: p.workspace, kind: 'shell', startTool: true, ...(p.slot !== undefined ? { slot: p.slot } : {}) });
      return { sandbox, warnings };
    })
    .onRequest(SandboxShutdown, async ({ name }) => ({ outcome: await managerByName(deps()).shutdown(name) }))
    .onRequest(SandboxKill, async ({ name }) => {
      await managerByName(deps()).kill(name);
      return { killed: true as const };
    })
    .onRequest(SandboxPersist, async ({ name }) => ({ sandbox: await managerByName(deps()).persist(name) }))
    .onRequest(SandboxResume, async ({ name }) => ({ sandbox: await managerByName(deps()).resume(name) }))
    .onRequest(SandboxClean, async ({ dryRun }) => ({ removed: await managerByName(deps()).clean(dryRun) }));
}

/**
 * Pushes `$/sandbox/changed` for each lifecycle event of one of our instances,
 * in the order Incus sent them: each event re-reads its instance, and a later
 * event of the same instance waits for the earlier one's notification, so a
 * slow read of a "stopped" cannot arrive after the "deleted" that followed it.
 */
export function watchSandboxes(conn: MessageConnection, incus: IncusClient, env: NodeJS.ProcessEnv, log: Log): IncusEventStream {
  const prefix = env.COI_CONTAINER_PREFIX || DEFAULT_PREFIX;
  const events = incus.events({ types: ['lifecycle'], onLog: (m) => log.debug(m) });
  const queues = new Map<string, Promise<void>>();
  events.on('event', (e) => {
    const lc = lifecycleOf(e);
    const m = lc && /^\/1\.0\/instances\/([^/?]+)/.exec(lc.source);
    if (!lc || !m) return;
    const name = decodeURIComponent(m[1]!);
    if (!name.startsWith(prefix)) return;
    const report = async () => {
      const inst = lc.action === 'instance-deleted' ? undefined : await incus.getInstance(name).catch(() => undefined);
      const sandbox = inst ? sandboxFromInstance(inst) ?? null : null;
      if (inst && !sandbox) return; // not ours after all (no managed label)
      await notify(conn, SandboxChanged, { name, action: lc.action, sandbox });
    };
    const next = (queues.get(name) ?? Promise.resolve())
      .then(report)
      .catch((err: unknown) => log.warn(`could not report ${name}: ${toCoiError(err).message}`));
    queues.set(name, next);
    void next.then(() => {
      if (queues.get(name) === next) queues.delete(name);
    });
  });
  return events;
}
