/**
 * Threats for the editor: the helper subscribes to the guard's `threat` topic
 * and forwards every event to its client as `$/threat` the moment it arrives,
 * and answers the alert view's questions about the audit logs (history, where
 * a raw line is). Events of other prefixes' sandboxes are not this client's
 * (the tree lists only this prefix's sandboxes too).
 */
import { locateAuditLine, recentAudit, AuditReader } from '../core/audit';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import { GuardClient } from '../guard/client';
import { guardSocketPath } from '../guard/paths';
import type { Log } from '../log';
import { AuditLocate, AuditRecent, ThreatEventWire } from '../protocol/methods';
import type { Router } from '../protocol/rpc';
import { DEFAULT_PREFIX } from '../sandbox/naming';

const RECENT_DEFAULT = 500;

function reader(env: NodeJS.ProcessEnv): AuditReader {
  return { uid: process.getuid?.() ?? 0, ...(env.HOME ? { home: env.HOME } : {}), env };
}

export function registerThreatMethods(router: Router, env: NodeJS.ProcessEnv): void {
  const prefix = env.COI_CONTAINER_PREFIX || DEFAULT_PREFIX;
  router
    .onRequest(AuditRecent, async ({ limit, minLevel }) => {
      const { events, skipped } = await recentAudit(reader(env), { limit: limit ?? RECENT_DEFAULT, prefix, ...(minLevel ? { minLevel } : {}) });
      return { events, skipped };
    })
    .onRequest(AuditLocate, async ({ container, id }) => {
      const found = await locateAuditLine(container, id, reader(env));
      if (!found) {
        throw new CoiError(ErrorCodes.NOT_FOUND, `no audit log of ${container} holds the event ${id}`, {
          remedy: { title: 'List the log', shell: `coi audit ${container}` },
        });
      }
      return found;
    });
}

/**
 * Keeps a subscription to the guard's threats for as long as the helper runs:
 * a guard that is down or restarts is dialled again (GuardClient's backoff),
 * so a client misses events only while no guard runs — and those are in the
 * audit log, which the alert view reads.
 */
export function forwardThreats(send: (e: ThreatEventWire) => void, env: NodeJS.ProcessEnv, log: Log): { close(): void } {
  const prefix = env.COI_CONTAINER_PREFIX || DEFAULT_PREFIX;
  const client = new GuardClient({ socketPath: guardSocketPath(env), reconnect: true, log });
  client.on('event', (e) => {
    if (e.topic !== 'threat' || !e.event.container.startsWith(prefix)) return;
    try {
      send(e.event);
    } catch (err) {
      log.warn(`could not forward a threat of ${e.event.container}: ${toCoiError(err).message}`);
    }
  });
  client.on('connected', () => log.debug('subscribed to the guard\'s threats'));
  client.on('disconnected', () => log.info('lost the guard; threats resume when it is back'));
  void client.subscribe(['threat']).catch(() => undefined);
  client.connect({ timeoutMs: 5_000 }).catch((e: unknown) => log.info(`no guard for threats yet (${toCoiError(e).message}); retrying`));
  return { close: () => client.close() };
}
