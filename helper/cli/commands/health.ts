/**
 * `coi health`: is this host ready and safe for sandboxes? Gathers facts,
 * judges them (helper/health/evaluate.ts), optionally fixes what is safe,
 * and exits 0 healthy, 1 degraded, 2 unhealthy.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { evaluate } from '../../health/evaluate';
import { applyFixes } from '../../health/fix';
import { gatherFacts, ProbeOptions } from '../../health/probe';
import { renderText } from '../../health/render';
import { exitCodeOf, HealthReport, healthReport } from '../../health/schema';
import { describeZodError } from '../../protocol/rpc';
import { Command, formatOption, parseFlags } from '../command';

export const healthCommand: Command = {
  name: 'health',
  summary: 'Check that this host is ready and safe for sandboxes (exit 0 healthy, 1 degraded, 2 unhealthy)',
  usage: 'coi health [--format text|json] [--verbose] [--fix [--dry-run]] [--no-live] [--target IP[:PORT]]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, {
      format: { type: 'string' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
      fix: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'no-live': { type: 'boolean' },
      target: { type: 'string' },
    });
    const format = values.json ? 'json' : formatOption(this, values.format);
    if (values['dry-run'] && !values.fix) throw new CoiError(ErrorCodes.INVALID_INPUT, `--dry-run goes with --fix\nusage: ${this.usage}`);
    const probe: ProbeOptions = {
      env: ctx.env,
      incus: ctx.incus(),
      log: ctx.log,
      cwd: process.cwd(),
      live: !values['no-live'],
      ...(values.target ? { target: values.target } : {}),
      ...(format === 'text' ? { progress: (m: string) => ctx.err(`coi: ${m}\n`) } : {}),
    };
    let facts = await gatherFacts(probe);
    let report = evaluate(facts);
    if (values.fix) {
      const fixes = await applyFixes(report, facts, { env: ctx.env, incus: ctx.incus(), log: ctx.log, dryRun: values['dry-run'] === true, ...(process.argv[1] ? { script: process.argv[1] } : {}) });
      if (fixes.some((f) => f.outcome === 'fixed')) {
        facts = await gatherFacts(probe);
        report = evaluate(facts);
      }
      report = { ...report, fixes };
    }
    const valid = healthReport().safeParse(report);
    if (!valid.success) throw new CoiError(ErrorCodes.INTERNAL, `the health report does not match its schema: ${describeZodError(valid.error)}`);
    if (format === 'json') ctx.out(JSON.stringify(report, null, 2) + '\n');
    else ctx.out(renderText(report, values.verbose === true));
    return exitCodeOf(report);
  },
};
