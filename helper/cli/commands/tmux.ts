import { CoiError, ErrorCodes } from '../../errors';
import { Command, parseFlags } from '../command';
import { managerFor } from '../sandboxes';

const usage = 'coi tmux send NAME "text"  |  coi tmux capture NAME  |  coi tmux list [--format json]';

export const tmuxCommand: Command = {
  name: 'tmux',
  summary: "Script an agent's tmux session: type into it, read its screen, list sessions",
  usage,
  async run(args, ctx) {
    const [action, ...rest] = args;
    const { values, positionals } = parseFlags(this, rest, { format: { type: 'string' } }, true);
    const mgr = managerFor(ctx);
    switch (action) {
      case 'send':
        if (positionals.length !== 2) throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
        await mgr.tmuxSend(positionals[0]!, positionals[1]!);
        return 0;
      case 'capture':
        if (positionals.length !== 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
        ctx.out(await mgr.tmuxCapture(positionals[0]!));
        return 0;
      case 'list': {
        const l = await mgr.tmuxList();
        if (values.format === 'json') ctx.out(JSON.stringify(l, null, 2) + '\n');
        else for (const x of l) ctx.out(`${x.name}\t${x.sessions.join(',') || '-'}\n`);
        return 0;
      }
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
    }
  },
};
