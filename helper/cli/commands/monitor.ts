/**
 * `coi monitor [NAME]`: what the guard's monitor sees now — for one sandbox
 * its processes (with what their stdin/stdout/stderr are), connections and
 * the latest threats; without a name (and no single sandbox for the current
 * workspace), every sandbox it watches. Asks the guard (root reads the
 * container's /proc); a sandbox it does not watch gets a one-shot look.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { GuardClient } from '../../guard/client';
import { displaySafe } from '../../guard/monitor/detectors/common';
import { guardSocketPath } from '../../guard/paths';
import { MonitorSnapshot, MonitorStatus } from '../../protocol/methods';
import { Command, formatOption, parseFlags } from '../command';
import { managerFor, resolveTargets } from '../sandboxes';
import { formatRecord } from './audit';

const usage = 'coi monitor [NAME] [--format text|json]';

export const monitorCommand: Command = {
  name: 'monitor',
  summary: 'Show what the guard monitors now: processes, connections, threats',
  usage,
  async run(args, ctx) {
    const { values, positionals } = parseFlags(this, args, { format: { type: 'string' }, json: { type: 'boolean' }, workspace: { type: 'string', short: 'w' } }, true);
    const format = values.json ? 'json' : formatOption(this, values.format);
    if (positionals.length > 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `one sandbox at a time\nusage: ${usage}`);
    let name = positionals[0];
    if (!name) {
      name = await resolveTargets(managerFor(ctx, {}, { quiet: true }), ctx, [], values.workspace ? { workspace: values.workspace } : {})
        .then((t) => t[0])
        .catch(() => undefined);
    }
    const client = new GuardClient({ socketPath: guardSocketPath(ctx.env) });
    try {
      await client.connect({ timeoutMs: 3_000 });
      const r = await client.request(MonitorSnapshot, name ? { container: name } : {});
      if (format === 'json') {
        ctx.out(`${JSON.stringify(r, null, 2)}\n`);
        return 0;
      }
      if (!r.execEvents.available) ctx.out(`note: the guard has no exec events (${r.execEvents.reason ?? 'unavailable'}): it polls only\n`);
      if (r.monitors.length === 0) ctx.out('the guard monitors no sandbox now\n');
      for (const m of r.monitors) ctx.out(name ? detail(m) : summary(m));
      return 0;
    } finally {
      client.close();
    }
  },
};

function summary(m: MonitorStatus): string {
  const worst = m.threats.filter((t) => t.category !== 'monitor').at(-1);
  return `${m.container}  ${m.state}  ${m.processCount ?? '?'} processes  ${m.polls} polls (${m.lastPollMs.toFixed(1)} ms)  ${worst ? `last threat: ${worst.level.toUpperCase()} ${displaySafe(worst.title, 80)}` : 'no threats'}\n`;
}

function detail(m: MonitorStatus): string {
  const out: string[] = [];
  out.push(`${m.container}: ${m.state}${m.ownerUid !== undefined ? ` (owner uid ${m.ownerUid})` : ''}${m.startedAt ? ` since ${m.startedAt}` : ''}`);
  out.push(`  ${m.polls} polls, ${m.peeks} peeks at new processes, last poll ${m.lastPollMs.toFixed(1)} ms`);
  if (m.policy) {
    const p = m.policy;
    out.push(`  responses: HIGH ${p.pauseOnHigh ? 'pauses' : 'alerts'}, CRITICAL ${p.killOnCritical ? 'kills' : p.pauseOnHigh ? 'pauses' : 'alerts'}${p.forensicsOnKill ? ' (forensic copy kept)' : ''}; audit log ${m.auditPath ?? '(none)'} kept ${p.retentionDays} days`);
  } else out.push('  not monitored: a one-shot look, nothing is done about what it shows');
  if (m.processes) {
    out.push('', `PROCESSES (${m.processCount ?? m.processes.length})`, '      PID  IN-CTR        UID  COMMAND');
    for (const p of m.processes) {
      const net = p.stdio.some((s) => / (tcp|udp) /.test(s)) ? `   [stdio: ${p.stdio.map((s) => displaySafe(s, 60)).join(' | ')}]` : '';
      out.push(`  ${String(p.pid).padStart(7)}  ${String(p.nsPid ?? '').padStart(6)}  ${String(p.uid).padStart(9)}  ${displaySafe(p.argv.length ? p.argv.join(' ') : `[${p.comm}]`, 120)}${net}`);
    }
  }
  if (m.connections) {
    const conns = m.connections.filter((c) => c.state !== 'LISTEN');
    out.push('', `CONNECTIONS (${conns.length}, listening sockets left out)`);
    for (const c of conns) out.push(`  ${c.proto} ${c.local} -> ${c.remote} ${c.state}${c.comm ? `  ${displaySafe(c.comm, 32)}[${c.pid}]` : ''}`);
  }
  const threats = m.threats.filter((t) => t.category !== 'monitor');
  out.push('', threats.length ? `THREATS (latest ${threats.length})` : 'THREATS: none so far');
  const text = out.join('\n') + '\n';
  return text + threats.map((t) => formatRecord(t as Parameters<typeof formatRecord>[0]).replace(/^/gm, '  ')).join('') + '\n';
}
