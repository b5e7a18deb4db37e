/**
 * The health report as text: what `coi health` prints, and what the editor's
 * "COI Health" output channel shows. Pure.
 */
import type { HealthReport } from './schema';

const MARK = { ok: 'ok  ', warning: 'WARN', failed: 'FAIL' } as const;

export function renderText(r: HealthReport, verbose: boolean): string {
  const lines: string[] = [];
  const keyWidth = Math.max(...Object.keys(r.checks).map((k) => k.length));
  for (const [key, c] of Object.entries(r.checks)) {
    lines.push(`${MARK[c.status]}  ${key.padEnd(keyWidth)}  ${c.message}`);
    const pad = ' '.repeat(keyWidth + 8);
    if (c.status !== 'ok' && c.remedy) lines.push(`${pad}fix: ${c.remedy.title}${c.remedy.shell ? `: ${c.remedy.shell}` : ''}${c.fixable ? ' (coi health --fix does this)' : ''}`);
    if (verbose) for (const [k, v] of Object.entries(c.details)) if (v !== undefined) lines.push(`${pad}${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  if (r.fixes?.length) {
    lines.push('', 'fixes:');
    for (const f of r.fixes) lines.push(`  ${f.outcome.padEnd(8)} ${f.check}: ${f.action}`);
  }
  const s = r.summary;
  lines.push('', `${r.status}: ${s.passed} ok, ${s.warnings} warning${s.warnings === 1 ? '' : 's'}, ${s.failed} failed (of ${s.total})`);
  return lines.join('\n') + '\n';
}
