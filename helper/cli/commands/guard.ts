import { CoiError, ErrorCodes } from '../../errors';
import { GuardClient } from '../../guard/client';
import { isAlive, startGuardDaemon } from '../../guard/daemon';
import { adminGroupName, guardSocketPath } from '../../guard/paths';
import { GuardServer } from '../../guard/server';
import { networkOptionsFromEnv } from '../../guard/network/env';
import { groupId } from '../../host/groups';
import { createLog } from '../../log';
import { Command, CliContext, formatOption, parseFlags } from '../command';

const usage = 'coi guard run|start|stop|status [--format text|json]';

export const guardCommand: Command = {
  name: 'guard',
  summary: 'Run, start, stop or inspect the root guard (network rules, monitor, audit)',
  usage,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'run':
        return runGuard(ctx);
      case 'start':
        return startGuard(ctx);
      case 'stop':
        return stopGuard(ctx);
      case 'status':
        return guardStatus(rest, ctx);
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `${sub ? `unknown guard action "${sub}"` : 'guard needs an action'}\nusage: ${usage}`);
    }
  },
};

function requireRoot(action: string): void {
  if (process.getuid?.() !== 0) {
    throw new CoiError(ErrorCodes.NOT_PERMITTED, `the guard must run as root to ${action}`, { remedy: { title: 'Run it as root', shell: `sudo coi guard ${action}` } });
  }
}

/** Foreground: what a service manager (or `coi guard start`) runs. */
async function runGuard(ctx: CliContext): Promise<number> {
  requireRoot('run');
  const log = createLog('guard');
  const group = adminGroupName(ctx.env);
  const adminGid = groupId(group);
  if (adminGid === undefined) log.warn(`group ${group} not found: only root may connect to the guard`);
  let stopping = false;
  let server: GuardServer | undefined;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`stopping (${why})`);
    await server?.stop();
    process.exit(0);
  };
  const network = networkOptionsFromEnv(ctx.env);
  if (network.scope) log.info(`guard scope ${network.scope}: fencing only sandboxes labelled with it, in tables ${network.tablesNote}`);
  server = new GuardServer({
    socketPath: guardSocketPath(ctx.env),
    incus: ctx.incus(),
    log,
    network: network.options,
    pool: poolLimitsFromEnv(ctx.env),
    ...(adminGid !== undefined ? { adminGid } : {}),
    ...(ctx.env.COI_GUARD_LOCK_DIR ? { primaryLockDir: ctx.env.COI_GUARD_LOCK_DIR } : {}),
    onShutdownRequested: () => void stop('asked over the socket'),
    monitor: {
      env: ctx.env,
      // A guard for tests on a shared host watches only the sandboxes of its run.
      ...(ctx.env.COI_GUARD_MONITOR_PREFIX ? { only: (name: string) => name.startsWith(ctx.env.COI_GUARD_MONITOR_PREFIX!) } : {}),
      ...(ctx.env.COI_GUARD_MONITOR === '0' ? { enabled: false } : {}),
    },
  });
  // The guard watches agents: one bad event must never take it down.
  process.on('uncaughtException', (e) => log.error(`uncaught: ${e.stack ?? e.message}`));
  process.on('unhandledRejection', (e) => log.error(`unhandled rejection: ${String(e)}`));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await server.start();
  return new Promise<number>(() => undefined);
}

/** COI_POOL_MAX (untaken warm containers on the host) and COI_POOL_MIN_FREE_MIB; bad values keep the defaults. */
function poolLimitsFromEnv(env: NodeJS.ProcessEnv): { maxMembers?: number; minFreeMiB?: number } {
  const n = (v: string | undefined, max: number) => (v !== undefined && /^\d{1,6}$/.test(v) && Number(v) <= max ? Number(v) : undefined);
  const maxMembers = n(env.COI_POOL_MAX, 64);
  const minFreeMiB = n(env.COI_POOL_MIN_FREE_MIB, 1 << 20);
  return { ...(maxMembers !== undefined ? { maxMembers } : {}), ...(minFreeMiB !== undefined ? { minFreeMiB } : {}) };
}

async function startGuard(ctx: CliContext): Promise<number> {
  requireRoot('start');
  const r = await startGuardDaemon(ctx.env);
  ctx.out(r.alreadyRunning ? `guard already running (pid ${r.pid}, version ${r.version})\n` : `guard started (pid ${r.pid}, socket ${r.socketPath}, log ${r.logFile})${r.replaced ? `, replacing pid ${r.replaced.pid} of another build` : ""}\n`);
  return 0;
}

async function stopGuard(ctx: CliContext): Promise<number> {
  const socketPath = guardSocketPath(ctx.env);
  const client = new GuardClient({ socketPath });
  try {
    await client.connect({ timeoutMs: 1_000 });
  } catch {
    ctx.out('guard is not running\n');
    return 0;
  }
  const info = await client.info();
  await client.shutdown();
  client.close();
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (!isAlive(info.guard.pid)) {
      ctx.out(`guard stopped (was pid ${info.guard.pid})\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new CoiError(ErrorCodes.TIMEOUT, `guard pid ${info.guard.pid} did not stop within 10 s`);
}

async function guardStatus(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parseFlags({ name: 'guard status', usage }, args, { format: { type: 'string' }, json: { type: 'boolean' } });
  const format = values.json ? 'json' : formatOption({ name: 'guard', usage }, values.format);
  const client = new GuardClient({ socketPath: guardSocketPath(ctx.env) });
  try {
    await client.connect({ timeoutMs: 2_000 });
    const info = await client.info();
    if (format === 'json') ctx.out(JSON.stringify(info, null, 2) + '\n');
    else {
      ctx.out(`guard ${info.guard.version}: running (pid ${info.guard.pid}) since ${info.startedAt}\n`);
      ctx.out(`socket ${info.socket}, ${info.clients} client(s), Incus events ${info.eventsConnected ? 'connected' : 'NOT connected'}\n`);
      ctx.out(`capabilities: ${info.capabilities.length ? info.capabilities.join(', ') : 'none'}\n`);
    }
    return 0;
  } finally {
    client.close();
  }
}
