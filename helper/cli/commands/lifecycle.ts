/**
 * The small lifecycle commands: shutdown, kill, persist, resume, clean. Each
 * is a thin front door onto a SandboxManager method.
 */
import { cleanOrphans, defaultCacheDir } from '../../images/builder';
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
}, { allowAll: true, filter: (s) => s.state === 'frozen' });

export const cleanCommand: Command = {
  name: 'clean',
  summary: 'Delete stopped ephemeral sandboxes, half-made ones from interrupted launches, and leftovers of interrupted image builds',
  usage: 'coi clean [--dry-run]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { 'dry-run': { type: 'boolean' } });
    const dry = values['dry-run'] === true;
    const victims = await managerFor(ctx).clean(dry);
    for (const v of victims) ctx.out(`${dry ? 'would delete' : 'deleted'} ${v.name} (${v.reason})\n`);
    const builds = await cleanOrphans(ctx.incus(), defaultCacheDir(ctx.env), dry);
    for (const b of builds) ctx.out(`${dry ? 'would delete' : 'deleted'} ${b} (its build was interrupted)\n`);
    if (victims.length === 0 && builds.length === 0) ctx.out('nothing to clean\n');
    return 0;
  },
};
