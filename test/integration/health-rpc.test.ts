/**
 * health/check over JSON-RPC, from the real helper (`coi --stdio`): the report
 * the editor's "Check Health" renders is the one `coi health --format json`
 * prints, schema and all — against the real Incus, and against none.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { healthReport } from '../../helper/health/schema';
import { HealthCheck } from '../../helper/protocol/methods';
import { call } from '../../helper/protocol/rpc';
import { coi, HELPER, requireIncus } from './support';

const nowhere = mkdtempSync(path.join(tmpdir(), 'coi-health-rpc-'));
after(() => rmSync(nowhere, { recursive: true, force: true }));

async function healthOverRpc(env: NodeJS.ProcessEnv, params: { live: boolean }) {
  const child = spawn(process.execPath, [HELPER, '--stdio'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'ignore'] });
  const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  conn.listen();
  try {
    return await call(conn, HealthCheck, { ...params, workspace: nowhere });
  } finally {
    conn.dispose();
    child.kill();
  }
}

test('against the real Incus: the same checks and verdicts as coi health --format json', async () => {
  await requireIncus();
  const { report } = await healthOverRpc({}, { live: false });
  assert.ok(healthReport().safeParse(report).success);
  const cli = await coi(['health', '--format', 'json', '--no-live'], {}, 120_000, nowhere);
  const fromCli = healthReport().parse(JSON.parse(cli.stdout));
  const verdicts = (r: typeof report) => Object.fromEntries(Object.entries(r.checks).filter(([k]) => k !== 'orphaned_resources').map(([k, c]) => [k, c.status]));
  // Other tests' sandboxes come and go meanwhile: orphans are the one check that may differ.
  assert.deepEqual(verdicts(report), verdicts(fromCli));
  assert.equal(report.checks.incus!.status, 'ok');
});

test('with Incus and the guard unreachable: failed checks whose remedies the editor turns into buttons', async () => {
  const { report } = await healthOverRpc({ INCUS_SOCKET: path.join(nowhere, 'incus.sock'), COI_GUARD_SOCKET: path.join(nowhere, 'guard.sock') }, { live: true });
  assert.equal(report.status, 'unhealthy');
  const incus = report.checks.incus!;
  assert.equal(incus.status, 'failed');
  assert.match(incus.message, /incus\.sock/);
  assert.equal(incus.remedy?.command, 'coi.setup');
  assert.equal(report.checks.guard?.status, 'failed');
  assert.match(report.checks.guard?.remedy?.shell ?? '', /coi guard start/);
});
