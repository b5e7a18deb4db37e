import { CoiError, ErrorCodes } from '../../errors';
import { toolNames } from '../../tools/registry';
import { Command, parseFlags } from '../command';
import { attachTerminal } from '../terminal';
import { launchManager } from '../sandboxes';

export const shellCommand: Command = {
  name: 'shell',
  summary: 'Start an agent in a sandbox for this workspace and attach to it',
  usage: `coi shell [--workspace P] [--slot N] [--persistent] [--image NAME] [--tool ${toolNames().join('|')}] [--profile NAME] [--resume[=ID]] [--background] [--format json]`,
  async run(argsIn, ctx) {
    // --resume takes an optional value, which parseArgs cannot express.
    let resume: true | string | undefined;
    const args = argsIn.filter((a) => {
      if (a === '--resume' || a === '--continue') resume = true;
      else if (a.startsWith('--resume=') || a.startsWith('--continue=')) resume = a.slice(a.indexOf('=') + 1) || true;
      else return true;
      return false;
    });
    const { values } = parseFlags(this, args, {
      workspace: { type: 'string', short: 'w' },
      slot: { type: 'string' },
      persistent: { type: 'boolean' },
      image: { type: 'string' },
      tool: { type: 'string' },
      profile: { type: 'string' },
      background: { type: 'boolean' },
      format: { type: 'string' },
    });
    const slot = values.slot === undefined ? undefined : Number(values.slot);
    if (slot !== undefined && !Number.isInteger(slot)) throw new CoiError(ErrorCodes.INVALID_INPUT, `--slot takes a number from 1 to 10, not "${values.slot}"`);
    const mgr = await launchManager(ctx, values.workspace ?? process.cwd(), {
      ...(values.persistent !== undefined ? { persistent: values.persistent } : {}),
      ...(values.image ? { image: values.image } : {}),
      ...(values.tool ? { tool: values.tool } : {}),
      ...(values.profile ? { profile: values.profile } : {}),
    });
    const sb = await mgr.open({ workspace: values.workspace ?? process.cwd(), kind: 'shell', startTool: true, ...(slot !== undefined ? { slot } : {}), ...(resume !== undefined ? { resume } : {}) });
    if (values.background) {
      if (values.format === 'json') ctx.out(JSON.stringify(sb, null, 2) + '\n');
      else ctx.out(`${sb.name}\n`);
      return 0;
    }
    ctx.err(`coi: attached to ${sb.name} (slot ${sb.slot}); detach with Ctrl-b d\n`);
    return attachTerminal(mgr, sb.name, ctx);
  },
};
