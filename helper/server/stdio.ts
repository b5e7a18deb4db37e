/**
 * `coi --stdio`: the JSON-RPC server the extension spawns. stdout carries
 * protocol messages only; logs go to stderr.
 */
import { helperInfo } from '../core/info';
import { guardSocketPath } from '../guard/paths';
import { IncusClient } from '../incus/client';
import { UnixSocketTransport } from '../incus/transport';
import { createLog } from '../log';
import { readAuditFor } from '../core/audit';
import { LABELS } from '../sandbox/labels';
import { AuditRead, HelperInfo, ThreatNotification } from '../protocol/methods';
import { notify, Router } from '../protocol/rpc';
import { createConnection } from '../rpc/connection';
import { Notifier, registerBuildMethods } from './builds';
import { registerHealthMethods } from './health';
import { registerSandboxMethods, watchSandboxes } from './sandboxes';
import { registerSnapshotMethods } from './snapshots';
import { forwardThreats, registerThreatMethods } from './threats';

export interface HelperServer {
  router: Router;
  /** Builds still running (cancelled when the client goes away). */
  builds: { running(): string[]; cancelAll(): void };
}

export function helperServer(incus: IncusClient, env: NodeJS.ProcessEnv, log = createLog('helper'), notify: Notifier = () => undefined): HelperServer {
  const router = new Router(log)
    .onRequest(HelperInfo, () => helperInfo(incus, guardSocketPath(env)))
    // The user's own audit logs (where the guard wrote them for this uid, or for the sandbox's owner).
    .onRequest(AuditRead, async ({ container, limit, minLevel }) => {
      const owner = (await incus.getInstance(container).catch(() => undefined))?.config?.[LABELS.owner];
      const uid = process.getuid?.() ?? 0;
      return readAuditFor(
        container,
        { uid, ...(env.HOME ? { home: env.HOME } : {}), env, ...(owner && /^\d+$/.test(owner) ? { ownerUid: Number(owner) } : {}) },
        { ...(limit ? { limit } : {}), ...(minLevel ? { minLevel } : {}) },
      );
    });
  registerSandboxMethods(router, incus, env, log);
  registerSnapshotMethods(router, incus, env, log);
  registerThreatMethods(router, env);
  registerHealthMethods(router, incus, env, log);
  const builds = registerBuildMethods(router, { incus, env, log, notify });
  return { router, builds };
}

export function helperRouter(incus: IncusClient, env: NodeJS.ProcessEnv, log = createLog('helper'), notify?: Notifier): Router {
  return helperServer(incus, env, log, notify).router;
}

export function runStdioServer(env: NodeJS.ProcessEnv = process.env): void {
  const log = createLog('helper');
  const incus = new IncusClient(new UnixSocketTransport(), env.COI_INCUS_PROJECT ? { project: env.COI_INCUS_PROJECT } : {});
  const conn = createConnection(process.stdin, process.stdout, { log });
  const server = helperServer(incus, env, log, (def, params) => {
    notify(conn, def, params).catch(() => undefined);
  });
  server.router.attach(conn);
  const events = watchSandboxes(conn, incus, env, log);
  const threats = forwardThreats((e) => void notify(conn, ThreatNotification, e).catch(() => undefined), env, log);
  conn.onClose(() => {
    events.close();
    threats.close();
    // Running builds clean up after themselves when cancelled; give them a moment.
    server.builds.cancelAll();
    const deadline = Date.now() + 15_000;
    const wait = () => (server.builds.running().length === 0 || Date.now() > deadline ? process.exit(0) : setTimeout(wait, 100));
    wait();
  });
  // A handler bug must cost one request, never the helper.
  process.on('uncaughtException', (e) => log.error(`uncaught: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e) => log.error(`unhandled rejection: ${String(e)}`));
  conn.listen();
  log.info(`helper ready (pid ${process.pid})`);
}
