import { listTrusted, trustWorkspace, untrustWorkspace } from '../../config/loader';
import { Command, formatOption, parseFlags } from '../command';
import { loadOptions } from './config';

export const trustCommand: Command = {
  name: 'trust',
  summary: "Allow this project's configuration to weaken isolation (pinned: any change asks again)",
  usage: 'coi trust [--workspace PATH] | coi trust --list [--format text|json]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { workspace: { type: 'string' }, list: { type: 'boolean' }, format: { type: 'string' }, json: { type: 'boolean' } });
    const format = values.json ? 'json' : formatOption(this, values.format);
    const opts = loadOptions(ctx, values);
    if (values.list) {
      const trusted = await listTrusted(opts.home);
      if (format === 'json') ctx.out(JSON.stringify(trusted, null, 2) + '\n');
      else if (!trusted.length) ctx.out('no trusted projects\n');
      else for (const t of trusted) ctx.out(`${t.workspace}  trusted ${t.trusted_at}  sha256 ${t.sha256.slice(0, 12)}…  (${t.settings.join('; ')})\n`);
      return 0;
    }
    const r = await trustWorkspace(opts);
    if (format === 'json') {
      ctx.out(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    if (!r.sha256) {
      ctx.out(`${r.workspace}: the project configuration sets nothing that needs trust\n`);
      return 0;
    }
    ctx.out(`trusted ${r.workspace} (sha256 ${r.sha256}); these project settings now apply:\n`);
    for (const s of r.settings) ctx.out(`  ${s.file}${s.line !== undefined ? `:${s.line}:${s.column}` : ''}: ${s.key} = ${JSON.stringify(s.value)} (${s.reason})\n`);
    ctx.out('Any change to them asks again. Undo with: coi untrust\n');
    return 0;
  },
};

export const untrustCommand: Command = {
  name: 'untrust',
  summary: "Withdraw trust from this project's configuration",
  usage: 'coi untrust [--workspace PATH]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, { workspace: { type: 'string' } });
    const r = await untrustWorkspace(loadOptions(ctx, values));
    ctx.out(r.removed ? `${r.workspace} is no longer trusted\n` : `${r.workspace} was not trusted\n`);
    return 0;
  },
};
