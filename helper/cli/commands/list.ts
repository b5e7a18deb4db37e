import { Command, formatOption, parseFlags } from '../command';
import { hostIdentity } from '../../sandbox/manager';
import { listSessions } from '../../sessions/store';
import { managerFor } from '../sandboxes';

export const listCommand: Command = {
  name: 'list',
  summary: 'List sandboxes (rebuilt from Incus every time)',
  usage: 'coi list [--all] [--format text|json]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { all: { type: 'boolean' }, format: { type: 'string' }, json: { type: 'boolean' } });
    const format = values.json ? 'json' : formatOption(this, values.format);
    const sandboxes = await managerFor(ctx).list();
    const sessions = values.all ? (await listSessions(hostIdentity(ctx.env).home)).map(({ dir: _dir, ...s }) => s) : undefined;
    if (format === 'json') {
      ctx.out(JSON.stringify({ sandboxes, ...(sessions ? { sessions } : {}) }, null, 2) + '\n');
      return 0;
    }
    if (sessions) {
      ctx.out(sessions.length ? 'saved sessions (resume with: coi shell --resume[=ID]):\n' : 'no saved sessions\n');
      for (const s of sessions) ctx.out(`  ${s.session_id.slice(0, 8)}  ${s.tool.padEnd(8)}  ${s.saved_at}  ${s.workspace}${s.state_saved ? '' : '  (no state saved yet)'}\n`);
      ctx.out('\n');
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
