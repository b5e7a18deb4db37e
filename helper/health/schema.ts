/**
 * The JSON `coi health --format json` prints (reference §9, plus a remedy per
 * check and the fixes `--fix` applied). Scripts and the extension validate
 * against this schema; the integration tests do too.
 */
import { z } from 'zod';
import { once } from '../lazy';

function build() {
  const checkStatus = z.enum(['ok', 'warning', 'failed']);

  const remedy = z.object({ title: z.string(), shell: z.string().optional(), command: z.string().optional() });

  const healthCheck = z.object({
    /** A person's name for the check. */
    name: z.string(),
    status: checkStatus,
    /** One sentence: what was found. */
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
    /** How to fix it; present on every check that is not ok. */
    remedy: remedy.optional(),
    /** True when `coi health --fix` can fix it. */
    fixable: z.boolean().optional(),
  });

  const healthFix = z.object({
    check: z.string(),
    /** What was done, or would be done with --dry-run, or why it was not. */
    action: z.string(),
    outcome: z.enum(['fixed', 'failed', 'skipped', 'dry-run']),
  });

  const healthReport = z
    .object({
      status: z.enum(['healthy', 'degraded', 'unhealthy']),
      timestamp: z.string(),
      checks: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), healthCheck),
      summary: z.object({ total: z.number().int(), passed: z.number().int(), warnings: z.number().int(), failed: z.number().int() }),
      fixes: z.array(healthFix).optional(),
    })
    .superRefine((r, ctx) => {
      const all = Object.values(r.checks);
      const count = (s: CheckStatus) => all.filter((c) => c.status === s).length;
      const want = { total: all.length, passed: count('ok'), warnings: count('warning'), failed: count('failed') };
      if (JSON.stringify(want) !== JSON.stringify(r.summary)) ctx.addIssue({ code: 'custom', message: `summary ${JSON.stringify(r.summary)} does not count the checks ${JSON.stringify(want)}`, path: ['summary'] });
      const status = want.failed > 0 ? 'unhealthy' : want.warnings > 0 ? 'degraded' : 'healthy';
      if (status !== r.status) ctx.addIssue({ code: 'custom', message: `status ${r.status} does not follow from the checks (${status})`, path: ['status'] });
      for (const [k, c] of Object.entries(r.checks)) if (c.status !== 'ok' && !c.remedy) ctx.addIssue({ code: 'custom', message: `${k} is ${c.status} but says no fix`, path: ['checks', k, 'remedy'] });
    });
  return { healthReport };
}

/** Built on first use (see helper/lazy.ts). */
export const healthReport = once(() => build().healthReport);
export type HealthReport = z.infer<ReturnType<typeof healthReport>>;
export type HealthCheck = HealthReport['checks'][string];
export type CheckStatus = HealthCheck['status'];
export type HealthFix = NonNullable<HealthReport['fixes']>[number];

/** 0 healthy, 1 degraded, 2 unhealthy. */
export function exitCodeOf(r: Pick<HealthReport, 'status'>): 0 | 1 | 2 {
  return r.status === 'healthy' ? 0 : r.status === 'degraded' ? 1 : 2;
}
