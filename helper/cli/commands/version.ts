import { helperInfo } from '../../core/info';
import { guardSocketPath } from '../../guard/paths';
import { Command, formatOption, parseFlags } from '../command';

export const versionCommand: Command = {
  name: 'version',
  summary: 'Show the versions of coi, its guard and the Incus server',
  usage: 'coi version [--format text|json] [--json]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { format: { type: 'string' }, json: { type: 'boolean' } });
    const format = values.json ? 'json' : formatOption(this, values.format);
    const info = await helperInfo(ctx.incus(), guardSocketPath(ctx.env));
    if (format === 'json') {
      ctx.out(JSON.stringify(info, null, 2) + '\n');
    } else {
      ctx.out(`coi    ${info.helper.version} (node ${info.helper.node})\n`);
      ctx.out(info.guard.reachable ? `guard  ${info.guard.version} (pid ${info.guard.pid})\n` : `guard  not running: ${info.guard.error}\n`);
      ctx.out(info.incus.reachable ? `incus  ${info.incus.serverVersion} (API ${info.incus.apiVersion})\n` : `incus  unreachable: ${info.incus.error}\n`);
    }
    if (!info.incus.reachable) {
      ctx.err(`coi: cannot reach Incus at ${info.incus.endpoint}\n  fix: start it with: ${info.incus.remedy ?? 'sudo coi setup'}\n`);
      return 1;
    }
    return 0;
  },
};
