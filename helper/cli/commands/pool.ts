/**
 * `coi pool warm|status`: fill this workspace's warm pool ahead of the first
 * launch, and see what the guard keeps ready. `coi clean` empties it.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { GuardClient } from '../../guard/client';
import { guardSocketPath } from '../../guard/paths';
import { GuardPoolStatus } from '../../pool/protocol';
import { Command, parseFlags } from '../command';
import { launchManager } from '../sandboxes';

const usage = 'coi pool warm [--workspace P] [--wait SECONDS]  |  coi pool status [--format json]';

export const poolCommand: Command = {
  name: 'pool',
  summary: 'Warm sandboxes: fill the pool of this workspace ([pool] size) ahead of time, or show what the guard keeps ready',
  usage,
  async run(args, ctx) {
    const [action, ...rest] = args;
    const { values } = parseFlags(this, rest, { workspace: { type: 'string', short: 'w' }, wait: { type: 'string' }, format: { type: 'string' } });
    switch (action) {
      case 'warm': {
        const wait = values.wait === undefined ? 0 : Number(values.wait);
        if (!Number.isFinite(wait) || wait < 0 || wait > 3600) throw new CoiError(ErrorCodes.INVALID_INPUT, `--wait takes seconds from 0 to 3600, not ${values.wait}`);
        const mgr = await launchManager(ctx, values.workspace ?? process.cwd(), {}, { quiet: true });
        const idle = await mgr.warmPool(values.workspace ?? process.cwd(), wait * 1000);
        ctx.out(idle.length ? `${idle.join('\n')}\n` : '');
        const want = mgr.settings.poolSize ?? 0;
        if (wait > 0 && idle.length < want) {
          ctx.err(`coi: only ${idle.length} of ${want} warm container(s) ready after ${wait} s (see coi pool status)\n`);
          return 1;
        }
        return 0;
      }
      case 'status': {
        const g = new GuardClient({ socketPath: guardSocketPath(ctx.env) });
        try {
          await g.connect({ timeoutMs: 3_000 });
          const s = await g.request(GuardPoolStatus, {});
          if (values.format === 'json') ctx.out(JSON.stringify(s, null, 2) + '\n');
          else {
            if (s.pools.length === 0) ctx.out('no warm pools\n');
            for (const p of s.pools) ctx.out(`workspace ${p.workspaceHash}  image ${p.image}  size ${p.size}  idle ${p.idle.join(',') || '-'}  filling ${p.filling.join(',') || '-'}\n`);
            for (const p of s.problems) ctx.out(`problem: ${p}\n`);
          }
          return 0;
        } finally {
          g.close();
        }
      }
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
    }
  },
};
