import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';
import { LoadOptions, loadConfig } from '../../config/loader';
import { leafPaths } from '../../config/merge';
import { describeSource } from '../../config/provenance';
import type { ConfigWarning, LoadedConfig } from '../../config/resolve';
import { formatPath } from '../../config/toml';
import { CliContext, Command, formatOption, parseFlags } from '../command';

const usage = 'coi config show [--format text|json] [--workspace PATH] [--profile NAME]';

/** HOME and the workspace for a config command: the workspace flag, else the current directory. */
export function loadOptions(ctx: CliContext, values: { workspace?: string | undefined; profile?: string | undefined }): LoadOptions {
  const opts: LoadOptions = { home: ctx.env.HOME || homedir(), workspace: resolve(values.workspace ?? process.cwd()), cwd: process.cwd(), env: ctx.env };
  if (values.profile) opts.profile = values.profile;
  return opts;
}

/** Warnings go to stderr so that `--format json` output stays parseable. */
export function printWarnings(ctx: CliContext, warnings: readonly ConfigWarning[]): void {
  for (const w of warnings) {
    ctx.err(`coi: warning: ${w.message}\n`);
    if (w.remedy?.shell) ctx.err(`  fix: ${w.remedy.title}: ${w.remedy.shell}\n`);
  }
}

/** Every leaf key of the effective configuration with its value and source, in schema order. */
export function effectiveRows(loaded: Pick<LoadedConfig, 'config' | 'provenance'>): Array<{ key: string; value: unknown; source: string }> {
  const config = loaded.config as unknown as Record<string, unknown>;
  const rows: Array<{ key: string; value: unknown; source: string }> = [];
  for (const path of leafPaths(config)) {
    const key = formatPath(path);
    const value = path.reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], config);
    const src = loaded.provenance[key];
    let source = src ? describeSource(src) : 'default';
    if (src?.also?.length) source += ` (+ ${src.also.map(describeSource).join(', ')})`;
    rows.push({ key, value, source });
  }
  return rows;
}

export function renderRows(rows: ReadonlyArray<{ key: string; value: unknown; source: string }>): string {
  const cells = rows.map((r) => ({ left: `${r.key} = ${JSON.stringify(r.value)}`, source: r.source }));
  const width = Math.min(56, Math.max(...cells.map((c) => c.left.length)));
  return cells.map((c) => `${c.left.padEnd(width)}  # ${c.source}\n`).join('');
}

export function trustLine(loaded: LoadedConfig): string {
  const n = loaded.trust.settings.length;
  switch (loaded.trust.status) {
    case 'not-needed':
      return 'nothing in the project needs trust';
    case 'trusted':
      return `trusted (${n} privileged setting(s) pinned)`;
    case 'trust-all':
      return `COI_TRUST_ALL=1 (${n} privileged setting(s) applied)`;
    case 'changed':
      return `CHANGED since trusted: ${n} privileged setting(s) held back until you run coi trust again`;
    case 'untrusted':
      return `untrusted: ${n} privileged setting(s) held back (coi trust to allow)`;
  }
}

export const configCommand: Command = {
  name: 'config',
  summary: 'Show the effective configuration and which layer set each value',
  usage,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    if (sub !== 'show') throw new CoiError(ErrorCodes.INVALID_INPUT, `${sub ? `unknown config action "${sub}"` : 'config needs an action'}\nusage: ${usage}`);
    const { values } = parseFlags(this, rest, { format: { type: 'string' }, json: { type: 'boolean' }, workspace: { type: 'string' }, profile: { type: 'string' } });
    const format = values.json ? 'json' : formatOption(this, values.format);
    const loaded = await loadConfig(loadOptions(ctx, values));
    printWarnings(ctx, loaded.warnings);
    if (format === 'json') {
      ctx.out(
        JSON.stringify(
          {
            workspace: loaded.workspace,
            profile: loaded.profile,
            files: loaded.files,
            trust: loaded.trust,
            warnings: loaded.warnings,
            config: loaded.config,
            provenance: loaded.provenance,
          },
          null,
          2,
        ) + '\n',
      );
      return 0;
    }
    const chain = loaded.profile.chain.map((p) => p.name).join(' → ');
    ctx.out(`# workspace  ${loaded.workspace}\n`);
    ctx.out(`# profile    ${loaded.profile.name}${loaded.profile.chain.length > 1 ? ` (${chain})` : ''}\n`);
    ctx.out(`# files      ${loaded.files.length ? loaded.files.join(', ') : 'none (built-in defaults)'}\n`);
    ctx.out(`# trust      ${trustLine(loaded)}\n\n`);
    ctx.out(renderRows(effectiveRows(loaded)));
    return 0;
  },
};
