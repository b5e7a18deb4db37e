import { Command, parseFlags } from '../command';
import { managerFor, resolveTargets } from '../sandboxes';
import { attachTerminal } from '../terminal';

export const attachCommand: Command = {
  name: 'attach',
  summary: "Attach this terminal to a sandbox's agent session",
  usage: 'coi attach [NAME] [--workspace P]',
  async run(args, ctx) {
    const { values, positionals } = parseFlags(this, args, { workspace: { type: 'string', short: 'w' } }, true);
    const mgr = managerFor(ctx);
    const [name] = await resolveTargets(mgr, ctx, positionals.slice(0, 1), { ...(values.workspace ? { workspace: values.workspace } : {}), filter: (s) => s.state === 'running' });
    return attachTerminal(mgr, name!, ctx);
  },
};
