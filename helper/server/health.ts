/**
 * `health/check` over JSON-RPC: the checks of `coi health`, judged the same
 * way (helper/health/evaluate.ts), for the editor's "Check Health".
 */
import * as os from 'node:os';
import { evaluate } from '../health/evaluate';
import { gatherFacts } from '../health/probe';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { HealthCheck } from '../protocol/methods';
import type { Router } from '../protocol/rpc';

export function registerHealthMethods(router: Router, incus: IncusClient, env: NodeJS.ProcessEnv, log: Log): void {
  router.onRequest(HealthCheck, async ({ workspace, live }) => {
    const facts = await gatherFacts({ env, incus, log, cwd: workspace ?? (env.HOME || os.homedir()), live, progress: (m) => log.debug(`health: ${m}`) });
    return { report: evaluate(facts) };
  });
}
