/**
 * The small lifecycle commands: shutdown, kill, persist, resume, clean. Each
 * is a thin front door onto a SandboxManager method.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { GuardClient } from '../../guard/client';
import { guardSocketPath } from '../../guard/paths';
import { GUARD_CAPABILITIES, GuardCleanOrphans } from '../../protocol/methods';
import { drainPool } from '../../pool/access';
import { frozenBehindIncus } from '../../host/freezer';
import { cleanOrphans as cleanBuildLeftovers, defaultCacheDir } from '../../images/builder';
import type { SandboxInfo } from '../../sandbox/labels';
import type { SandboxManager } from '../../sandbox/manager';
import { Command, CliContext, parseFlags } from '../command';
import { managerFor, resolveTargets } from '../sandboxes';

function targetsCommand(name: string, summary: string, act: (mgr: SandboxManager, target: string, ctx: CliContext) => Promise<string>, opts: { allowAll: boolean; filter?: (s: SandboxInfo) => boolean }): Command {
  return {
    name,
    summary,
    usage: `coi ${name} [NAME…]${opts.allowAll ? ' [--all]' : ''} [--workspace P]`,
    async run(args, ctx) {
      const { values, positionals } = parseFlags(this, args, { all: { type: 'boolean', short: 'a' }, force: { type: 'boolean', short: 'f' }, workspace: { type: 'string', short: 'w' } }, true);
      const mgr = managerFor(ctx);
      const targets = await resolveTargets(mgr, ctx, positionals, { all: opts.allowAll && values.all === true, ...(values.workspace ? { workspace: values.workspace } : {}), ...(opts.filter ? { filter: opts.filter } : {}) });
      let failed = 0;
      for (const t of targets) {
        try {
          ctx.out(`${await act(mgr, t, ctx)}\n`);
        } catch (e) {
          failed++;
          ctx.err(`coi: ${t}: ${(e as Error).message}\n`);
        }
      }
      return failed > 0 ? 1 : 0;
    },
  };
}

export const shutdownCommand = targetsCommand('shutdown', 'Stop sandboxes gracefully (then by force); ephemeral ones are deleted, persistent ones kept', async (mgr, t) => {
  const outcome = await mgr.shutdown(t);
  return outcome === 'deleted' ? `${t}: shut down and deleted` : `${t}: shut down; kept (persistent), the next coi shell restarts it`;
}, { allowAll: true });

export const killCommand = targetsCommand('kill', 'Stop sandboxes at once and delete them', async (mgr, t) => {
  await mgr.kill(t);
  return `${t}: killed and deleted`;
}, { allowAll: true });

export const persistCommand = targetsCommand('persist', 'Keep sandboxes after their session ends (turn ephemeral into persistent)', async (mgr, t) => {
  await mgr.persist(t);
  return `${t}: persistent`;
}, { allowAll: true });

export const resumeCommand = targetsCommand('resume', 'Thaw sandboxes the guard froze', async (mgr, t) => {
  await mgr.resume(t);
  return `${t}: resumed`;
}, { allowAll: true, filter: (s) => s.state === 'frozen' || (s.state === 'running' && frozenBehindIncus('Running', s.name)) });

export const cleanCommand: Command = {
  name: 'clean',
  summary: 'Delete stopped ephemeral sandboxes, half-made ones from interrupted launches, warm pool containers (the pool is emptied) and leftovers of interrupted image builds; --orphans: network rules of sandboxes that no longer exist',
  usage: 'coi clean [--dry-run] [--orphans]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { 'dry-run': { type: 'boolean' }, orphans: { type: 'boolean' } });
    const dry = values['dry-run'] === true;
    if (values.orphans === true) return cleanOrphans(ctx, dry);
    const mgr = managerFor(ctx);
    // The guard first: it stops refilling the warm pool and deletes what it keeps; the rest (a dead guard's) below.
    const drained = dry ? [] : ((await drainPool(guardSocketPath(ctx.env), mgr.settings.prefix)) ?? []);
    for (const n of drained) ctx.out(`deleted ${n} (warm pool member)\n`);
    const victims = await mgr.clean(dry);
    const builds = await cleanBuildLeftovers(ctx.incus(), defaultCacheDir(ctx.env), dry);
    if (victims.length === 0 && builds.length === 0 && drained.length === 0) ctx.out('nothing to clean\n');
    for (const v of victims) {
      if (v.error) ctx.err(`coi: could not delete ${v.name} (${v.reason}): ${v.error}\n`);
      else ctx.out(`${dry ? 'would delete' : 'deleted'} ${v.name} (${v.reason})\n`);
    }
    for (const b of builds) ctx.out(`${dry ? 'would delete' : 'deleted'} ${b} (its build was interrupted)\n`);
    return victims.some((v) => v.error) ? 1 : 0;
  },
};

/** Network rules and allowlist caches a crash left behind: the guard (root) removes them. */
async function cleanOrphans(ctx: CliContext, dryRun: boolean): Promise<number> {
  const g = new GuardClient({ socketPath: guardSocketPath(ctx.env) });
  try {
    await g.connect({ timeoutMs: 3_000 });
    const info = await g.info();
    if (!info.capabilities.includes(GUARD_CAPABILITIES.network)) {
      throw new CoiError(ErrorCodes.GUARD_UNREACHABLE, `the running guard (${info.guard.version}) manages no network rules`, { remedy: { title: 'Restart the guard with this version', shell: 'sudo coi guard stop && sudo coi guard start' } });
    }
    const r = await g.request(GuardCleanOrphans, { dryRun });
    if (r.removed.length === 0 && r.caches.length === 0) ctx.out('no orphaned network rules\n');
    for (const o of r.removed) ctx.out(`${dryRun ? 'would remove' : 'removed'} the network rules of ${o.container} (${o.objects.length} object(s)): the sandbox no longer exists\n`);
    for (const f of r.caches) ctx.out(`${dryRun ? 'would remove' : 'removed'} allowlist cache ${f}\n`);
    return 0;
  } finally {
    g.close();
  }
}
