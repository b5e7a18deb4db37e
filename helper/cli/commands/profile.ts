import { CoiError, ErrorCodes } from '../../errors';
import { listProfiles, loadConfig } from '../../config/loader';
import { CliContext, Command, formatOption, parseFlags } from '../command';
import { effectiveRows, loadOptions, printWarnings, renderRows } from './config';

const usage = 'coi profile list [--format text|json] [--workspace PATH]\n       coi profile info NAME [--format text|json] [--workspace PATH]';

export const profileCommand: Command = {
  name: 'profile',
  summary: 'List profiles, or show what one sets and where each value comes from',
  usage,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'list':
        return list(rest, ctx);
      case 'info':
        return info(rest, ctx);
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `${sub ? `unknown profile action "${sub}"` : 'profile needs an action'}\nusage: ${usage}`);
    }
  },
};

const flags = { format: { type: 'string' }, json: { type: 'boolean' }, workspace: { type: 'string' } } as const;

async function list(args: string[], ctx: CliContext): Promise<number> {
  const { values } = parseFlags({ name: 'profile list', usage }, args, flags);
  const format = values.json ? 'json' : formatOption({ name: 'profile', usage }, values.format);
  const profiles = await listProfiles(loadOptions(ctx, values));
  if (format === 'json') {
    ctx.out(JSON.stringify(profiles, null, 2) + '\n');
    return 0;
  }
  const width = Math.max(...profiles.map((p) => p.name.length));
  for (const p of profiles) {
    const where = p.scope === 'builtin' ? 'built-in' : `${p.scope} ${p.file}`;
    const extra = [p.inherits ? `inherits ${p.inherits}` : '', p.hasContext ? 'CONTEXT.md' : ''].filter(Boolean).join(', ');
    ctx.out(`${p.name.padEnd(width)}  ${where}${extra ? ` (${extra})` : ''}${p.description ? ` — ${p.description}` : ''}\n`);
  }
  return 0;
}

async function info(args: string[], ctx: CliContext): Promise<number> {
  const { values, positionals } = parseFlags({ name: 'profile info', usage }, args, flags, true);
  const format = values.json ? 'json' : formatOption({ name: 'profile', usage }, values.format);
  const [name, ...extra] = positionals;
  if (!name || extra.length) throw new CoiError(ErrorCodes.INVALID_INPUT, `profile info takes one profile name\nusage: ${usage}`);
  // Only what locates files and trust: the COI_* overrides would hide what the profile itself sets.
  const env = { HOME: ctx.env.HOME, COI_CONFIG: ctx.env.COI_CONFIG, COI_TRUST_ALL: ctx.env.COI_TRUST_ALL };
  const loaded = await loadConfig({ ...loadOptions(ctx, values), env, profile: name });
  printWarnings(ctx, loaded.warnings);
  const rows = effectiveRows(loaded).filter((r) => loaded.provenance[r.key]?.layer === 'profile');
  const self = loaded.profile.chain[loaded.profile.chain.length - 1]!;
  if (format === 'json') {
    ctx.out(
      JSON.stringify(
        {
          name,
          scope: self.scope,
          ...(self.file ? { file: self.file } : {}),
          chain: loaded.profile.chain,
          context: loaded.profile.context,
          settings: Object.fromEntries(rows.map((r) => [r.key, { value: r.value, source: loaded.provenance[r.key] }])),
          trust: loaded.trust.status,
        },
        null,
        2,
      ) + '\n',
    );
    return 0;
  }
  ctx.out(`# profile  ${name} (${self.scope === 'builtin' ? 'built-in' : `${self.scope} ${self.file}`})\n`);
  if (loaded.profile.chain.length > 1) ctx.out(`# chain    ${loaded.profile.chain.map((p) => p.name).join(' → ')}\n`);
  for (const c of loaded.profile.context) ctx.out(`# context  ${c.file}\n`);
  ctx.out('\n');
  ctx.out(rows.length ? renderRows(rows) : '(sets nothing: the configuration as the files give it)\n');
  return 0;
}
