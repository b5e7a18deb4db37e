/**
 * `coi audit [NAME]`: a sandbox's audit log — what the guard's monitor saw and
 * did — from the file, so it works without the guard and after the sandbox
 * is gone. `--follow` keeps printing new records as the guard appends them.
 * `--format json` prints one JSON object per line, as in the file.
 */
import { promises as fsp } from 'node:fs';
import { CoiError, ErrorCodes } from '../../errors';
import { activePath, auditDirsFor, listAuditLogs, locateAudit, readAuditRecords } from '../../core/audit';
import { AuditRecord, followAudit } from '../../guard/monitor/audit';
import { displaySafe } from '../../guard/monitor/detectors/common';
import type { Severity } from '../../guard/monitor/detectors/types';
import { LABELS } from '../../sandbox/labels';
import { hostIdentity } from '../../sandbox/manager';
import { Command, CliContext, formatOption, parseFlags } from '../command';
import { managerFor, resolveTargets } from '../sandboxes';

const usage = 'coi audit [NAME] [--follow] [--format text|json] [--level info|warning|high|critical] [--limit N] [--file PATH]';
const LEVELS = ['info', 'warning', 'high', 'critical'] as const;

export const auditCommand: Command = {
  name: 'audit',
  summary: "Show a sandbox's audit log (threats seen, actions taken); --follow streams it",
  usage,
  async run(args, ctx) {
    const { values, positionals } = parseFlags(
      this,
      args,
      {
        follow: { type: 'boolean', short: 'f' },
        format: { type: 'string' },
        json: { type: 'boolean' },
        level: { type: 'string' },
        limit: { type: 'string', short: 'n' },
        file: { type: 'string' },
        workspace: { type: 'string', short: 'w' },
      },
      true,
    );
    const format = values.json ? 'json' : formatOption(this, values.format);
    const level = values.level as Severity | undefined;
    if (level !== undefined && !(LEVELS as readonly string[]).includes(level)) throw new CoiError(ErrorCodes.INVALID_INPUT, `--level takes ${LEVELS.join(', ')}\nusage: ${usage}`);
    const limit = values.limit === undefined ? undefined : Number(values.limit);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new CoiError(ErrorCodes.INVALID_INPUT, `--limit takes a positive whole number\nusage: ${usage}`);
    if (positionals.length > 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `one sandbox at a time\nusage: ${usage}`);
    const print = (r: AuditRecord) => ctx.out(format === 'json' ? `${JSON.stringify(r)}\n` : formatRecord(r));
    const opts = { ...(level ? { minLevel: level } : {}), ...(limit ? { limit } : {}) };

    if (values.file) {
      const { records, skipped } = await readAuditRecords([values.file], opts);
      records.forEach(print);
      if (skipped && format === 'text') ctx.err(`coi: ${skipped} line(s) of ${values.file} are not audit records\n`);
      return 0;
    }

    const reader = { uid: process.getuid?.() ?? 0, home: hostIdentity(ctx.env).home, env: ctx.env };
    let name = positionals[0];
    if (!name) {
      // The current workspace's sandbox when there is exactly one; else every log there is.
      name = await resolveTargets(managerFor(ctx, {}, { quiet: true }), ctx, [], values.workspace ? { workspace: values.workspace } : {})
        .then((t) => t[0])
        .catch(() => undefined);
      if (!name) {
        const logs = await listAuditLogs(reader);
        if (format === 'json') ctx.out(`${JSON.stringify({ logs }, null, 2)}\n`);
        else if (logs.length === 0) ctx.out(`no audit logs in ${auditDirsFor(reader).join(', ')} (the guard writes one per monitored sandbox)\n`);
        else for (const l of logs) ctx.out(`${l.container}  ${l.records} record(s)${l.worst ? `, worst ${l.worst.toUpperCase()}` : ''}${l.last ? `, last ${l.last}` : ''}  (${l.dir})\n`);
        return 0;
      }
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/.test(name)) throw new CoiError(ErrorCodes.INVALID_INPUT, `not a sandbox name: ${JSON.stringify(name.slice(0, 80))}`);
    // The sandbox's owner, when it still exists: their directory is where the guard wrote.
    const inst = await ctx
      .incus()
      .getInstance(name)
      .catch(() => undefined);
    const owner = inst?.config?.[LABELS.owner];
    const where = await locateAudit(name, { ...reader, ...(owner && /^\d+$/.test(owner) ? { ownerUid: Number(owner) } : {}) });

    const active = activePath(where.dir, name);
    const st = values.follow ? await fsp.stat(active).catch(() => undefined) : undefined;
    const { records, skipped } = await readAuditRecords(where.files, { ...opts, ...(st && where.files.at(-1) === active ? { activeUpTo: st.size } : {}) });
    if (!values.follow && where.files.length === 0) {
      throw new CoiError(ErrorCodes.NOT_FOUND, `no audit log for ${name} (looked in ${auditDirsFor(reader).join(', ')})`, {
        remedy: { title: 'Is monitoring on for it? It is with [monitoring] enabled = true or the hardened profile', shell: `coi monitor ${name}` },
      });
    }
    records.forEach(print);
    if (skipped && format === 'text') ctx.err(`coi: ${skipped} damaged line(s) skipped\n`);
    if (!values.follow) return 0;

    if (format === 'text') ctx.err(`coi: following ${active} (Ctrl-C to stop)\n`);
    const ac = new AbortController();
    const stop = () => ac.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for await (const r of followAudit(where.dir, name, { signal: ac.signal, ...(st ? { from: { ino: st.ino, offset: st.size } } : { fromStart: true }) })) {
        if (level && LEVELS.indexOf(r.level) < LEVELS.indexOf(level)) continue;
        print(r);
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  },
};

/** One record for a terminal: a header line, then the description indented. */
export function formatRecord(r: AuditRecord): string {
  const t = r.timestamp.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const folded = r.folded ? ` (+${r.folded} folded)` : '';
  const resp = r.response?.containMs !== undefined ? ` — contained in ${Math.round(r.response.containMs)} ms` : '';
  const head = `${t}  ${r.level.toUpperCase().padEnd(8)} ${displaySafe(String(r.action), 32).padEnd(10)} ${displaySafe(r.category, 32)}: ${displaySafe(r.title, 160)}${folded}${resp}`;
  return `${head}\n    ${displaySafe(r.description, 2000)}\n`;
}
