import { Command, formatOption, parseFlags } from '../command';
import { managerFor } from '../sandboxes';

export const listCommand: Command = {
  name: 'list',
  summary: 'List sandboxes (rebuilt from Incus every time)',
  usage: 'coi list [--all] [--format text|json]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { all: { type: 'boolean' }, format: { type: 'string' }, json: { type: 'boolean' } });
    const format = values.json ? 'json' : formatOption(this, values.format);
    const sandboxes = await managerFor(ctx).list();
    if (format === 'json') {
      ctx.out(JSON.stringify({ sandboxes }, null, 2) + '\n');
      return 0;
    }
    if (sandboxes.length === 0) {
      ctx.out('no sandboxes (start one with: coi shell)\n');
      return 0;
    }
    const rows = sandboxes.map((s) => [s.name, s.state + (s.phase === 'creating' ? ' (launching)' : ''), String(s.slot), s.tool, s.persistent ? 'persistent' : 'ephemeral', s.address ?? '-', s.workspace]);
    const head = ['NAME', 'STATE', 'SLOT', 'TOOL', 'MODE', 'ADDRESS', 'WORKSPACE'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [head, ...rows]) ctx.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
    return 0;
  },
};
