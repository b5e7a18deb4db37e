// "Check Health" in the editor: from the helper's health report to the
// notification, its buttons and the quick pick of problems, each with the
// fix-it it runs (extension/health/model.ts).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { HealthCheck, HealthReport, healthReport } from '../../helper/health/schema';
import { actionOf, buttonAction, FIX_PROBLEMS, problemsOf, remedyCommandLine, SHOW_REPORT, summaryOf } from '../../extension/health/model';

const bin = { execPath: '/opt/code/node', helperJs: '/ext/dist/helper.js' };
const HELPER = 'env ELECTRON_RUN_AS_NODE=1 /opt/code/node /ext/dist/helper.js';

function report(checks: Record<string, HealthCheck>): HealthReport {
  const all = Object.values(checks);
  const count = (s: string) => all.filter((c) => c.status === s).length;
  const failed = count('failed');
  const warnings = count('warning');
  // Valid by the same schema `coi health --format json` is checked against.
  return healthReport().parse({
    status: failed ? 'unhealthy' : warnings ? 'degraded' : 'healthy',
    timestamp: '2026-11-27T08:00:00Z',
    checks,
    summary: { total: all.length, passed: count('ok'), warnings, failed },
  });
}

const ok = (name: string): HealthCheck => ({ name, status: 'ok', message: 'fine', details: {} });
const incusDown: HealthCheck = {
  name: 'Incus',
  status: 'failed',
  message: 'Incus cannot be reached at unix:/nowhere/incus.sock: connect ENOENT',
  details: {},
  remedy: { title: 'Set up this machine', shell: 'sudo coi setup', command: 'coi.setup' },
};
const guardDown: HealthCheck = { name: 'Guard', status: 'failed', message: 'the guard is not running', details: {}, remedy: { title: 'Start the guard', shell: 'sudo coi guard start' }, fixable: true };
const oldKernel: HealthCheck = { name: 'Kernel version', status: 'warning', message: 'Linux 5.4 is older than 5.15', details: {}, remedy: { title: 'Boot a newer kernel (5.15 or later)' } };
const privileged: HealthCheck = {
  name: 'Privileged containers',
  status: 'warning',
  message: 'a container runs privileged',
  details: {},
  remedy: { title: 'Unset security.privileged', shell: 'incus config unset <container> security.privileged' },
};

test('remedy command lines run the bundled helper for coi, with sudo only when not root', () => {
  assert.equal(remedyCommandLine('sudo coi guard start', bin, false), `sudo ${HELPER} guard start`);
  assert.equal(remedyCommandLine('sudo coi guard start', bin, true), `${HELPER} guard start`);
  assert.equal(remedyCommandLine('sudo coi guard stop && sudo coi guard start', bin, false), `sudo ${HELPER} guard stop && sudo ${HELPER} guard start`);
  assert.equal(remedyCommandLine('coi snapshot list --all; coi clean; incus image list', bin, false), `${HELPER} snapshot list --all; ${HELPER} clean; incus image list`);
  assert.equal(remedyCommandLine('COI_LOG_LEVEL=debug coi health --verbose', bin, false), `COI_LOG_LEVEL=debug ${HELPER} health --verbose`);
  assert.equal(remedyCommandLine('sudo modprobe br_netfilter && sudo sysctl -w x=1', bin, true), 'modprobe br_netfilter && sysctl -w x=1');
  assert.equal(remedyCommandLine('sudo usermod -aG incus-admin ann', bin, false), 'sudo usermod -aG incus-admin ann', 'other commands untouched');
  assert.equal(remedyCommandLine('incus network info coibr0', bin, false), 'incus network info coibr0', '"coi" inside a word is not the helper');
});

test('each remedy becomes one fix-it: an editor command, a terminal line (typed only when it has a placeholder), or the report', () => {
  assert.deepEqual(actionOf(incusDown, bin, false), { kind: 'command', title: 'Set up this machine', command: 'coi.setup' });
  assert.deepEqual(actionOf(guardDown, bin, false), { kind: 'terminal', title: 'Start the guard', commandLine: `sudo ${HELPER} guard start`, execute: true });
  assert.deepEqual(actionOf(privileged, bin, false), { kind: 'terminal', title: 'Unset security.privileged', commandLine: 'incus config unset <container> security.privileged', execute: false });
  assert.deepEqual(actionOf(oldKernel, bin, false), { kind: 'report', title: SHOW_REPORT });
  assert.deepEqual(actionOf({ remedy: { title: 'Name it', shell: '[container]\nimage = "x"' } }, bin, false), { kind: 'report', title: SHOW_REPORT }, 'a file snippet is not run');
  assert.deepEqual(actionOf({ remedy: { title: 'Evil', command: 'workbench.action.terminal.sendSequence' } }, bin, false), { kind: 'report', title: SHOW_REPORT }, 'only our own commands');
});

test('problems: failed first, then warnings; ok checks are not problems', () => {
  const r = report({ kernel: oldKernel, incus: incusDown, pool: ok('Storage pool'), guard: guardDown });
  const p = problemsOf(r, bin, false);
  assert.deepEqual(p.map((x) => [x.key, x.status]), [['incus', 'failed'], ['guard', 'failed'], ['kernel', 'warning']]);
  assert.equal(p[0]!.label, '$(error) Incus');
  assert.equal(p[0]!.description, 'Set up this machine');
  assert.match(p[0]!.detail, /^Incus cannot be reached at unix:\/nowhere\/incus\.sock: connect ENOENT\. Fix: Set up this machine: sudo coi setup$/);
  assert.match(p[1]!.detail, /\(coi health --fix does this\)$/);
  assert.equal(p[2]!.label, '$(warning) Kernel version');
  assert.equal(p[2]!.description, 'no automatic fix');
});

test('the notification: healthy says so; one problem gets its own fix button; several get "Fix Problems…"', () => {
  const healthy = report({ incus: ok('Incus'), pool: ok('Storage pool') });
  assert.deepEqual(summaryOf(healthy, problemsOf(healthy, bin, false)), { severity: 'info', message: 'COI: this machine is healthy (2 ok, 0 warnings, 0 failed).', buttons: [SHOW_REPORT] });

  const one = report({ incus: ok('Incus'), guard: guardDown });
  const oneP = problemsOf(one, bin, false);
  const s1 = summaryOf(one, oneP);
  assert.equal(s1.severity, 'error');
  assert.match(s1.message, /^COI health: unhealthy: the guard is not running\. Fix: Start the guard: sudo coi guard start/);
  assert.deepEqual(s1.buttons, ['Start the guard', SHOW_REPORT]);
  assert.deepEqual(buttonAction('Start the guard', oneP), { kind: 'fix', problem: oneP[0] });

  const warnOnly = report({ kernel: oldKernel });
  assert.deepEqual(summaryOf(warnOnly, problemsOf(warnOnly, bin, false)).buttons, [SHOW_REPORT], 'nothing to run: only the report');
  assert.equal(summaryOf(warnOnly, problemsOf(warnOnly, bin, false)).severity, 'warning');

  const many = report({ incus: incusDown, guard: guardDown, kernel: oldKernel });
  const manyP = problemsOf(many, bin, false);
  const s3 = summaryOf(many, manyP);
  assert.equal(s3.message, 'COI health: unhealthy (0 ok, 1 warning, 2 failed): Incus, Guard, Kernel version.');
  assert.deepEqual(s3.buttons, [FIX_PROBLEMS, SHOW_REPORT]);
  assert.deepEqual(buttonAction(FIX_PROBLEMS, manyP), { kind: 'pick' });
  assert.deepEqual(buttonAction(SHOW_REPORT, manyP), { kind: 'report' });
  assert.equal(buttonAction(undefined, manyP), undefined, 'dismissed');
});
