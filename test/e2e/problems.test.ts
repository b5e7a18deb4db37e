// When Incus and the guard cannot be reached, the view says so (never empty) and
// its fix-it runs "Set Up This Machine". The terminal's shell is `cat` here, so
// the set-up command line is shown but never run on this machine.
// Screenshots: test-artifacts/e2e/problems/.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { VsCode, waitFor } from './harness';

const CONTAINER = 'coi';
const nowhere = mkdtempSync(join(tmpdir(), 'coi-e2e-nowhere-'));
let vs: VsCode;

before(async () => {
  vs = await VsCode.start({
    name: 'problems',
    env: { INCUS_SOCKET: join(nowhere, 'incus.sock'), COI_GUARD_SOCKET: join(nowhere, 'guard.sock') },
    settings: {
      'terminal.integrated.profiles.linux': { 'echo only': { path: '/bin/cat' } },
      'terminal.integrated.defaultProfile.linux': 'echo only',
    },
  });
});

after(async () => {
  await vs?.stop();
  rmSync(nowhere, { recursive: true, force: true });
});

test('unreachable Incus and guard are error items with their fix, and the status bar warns', async () => {
  const container = await vs.openViewContainer('COI', CONTAINER);
  await vs.waitForTreeItem(CONTAINER, 'Incus is not reachable');
  assert.deepEqual(await vs.treeLabels(CONTAINER), ['Incus is not reachable', 'The COI guard is not running']);
  const incusRow = vs.treeItems(CONTAINER, 'Incus is not reachable').first();
  assert.match((await incusRow.locator('.label-description').textContent()) ?? '', /incus\.sock/);
  await incusRow.hover();
  assert.equal(await incusRow.locator('.actions .action-label[aria-label="Set Up This Machine"]').count(), 1);
  await vs.screenshot('unreachable-view', container);
  const status = vs.page.locator('[id="coi.coi-vscode.coi.status"]');
  await status.waitFor({ timeout: 10_000 });
  assert.match((await status.getAttribute('aria-label')) ?? (await status.textContent()) ?? '', /COI/);
  await vs.screenshot('unreachable-window');
});

test('clicking the problem runs "Set Up This Machine": a terminal with the bundled helper\'s setup', async () => {
  await vs.treeItems(CONTAINER, 'Incus is not reachable').first().click();
  const helperJs = join(vs.extensionDir(), 'dist', 'helper.js');
  // Root here, so no sudo; the editor's own Node runs the bundled helper.
  await vs.waitForTerminalLine(`env ELECTRON_RUN_AS_NODE=1 ${process.execPath} ${helperJs} setup`);
  // The panel's header names the terminal.
  await vs.page.locator('.part.panel').filter({ hasText: 'COI Setup' }).waitFor({ timeout: 10_000 });
  await vs.screenshot('setup-terminal');
});

test('"Check Health": the verdict with its buttons, the report in "COI Health", and a problem\'s fix-it from the quick pick', async () => {
  await vs.runCommand('COI: Check Health');
  const verdict = await vs.waitForNotification(/COI health: unhealthy/, 60_000);
  await vs.screenshot('health-verdict', verdict);
  assert.match((await verdict.locator('.notification-list-item-message').textContent()) ?? '', /unhealthy \(\d+ ok, \d+ warnings?, \d+ failed\): Incus, .*COI guard/);
  assert.deepEqual(await vs.notificationButtons(verdict), ['Fix Problems…', 'Show Report']);
  await verdict.locator('.monaco-button', { hasText: 'Show Report' }).click();
  await vs.page.locator('.part.panel').filter({ hasText: 'COI Health' }).first().waitFor({ timeout: 10_000 });
  // The channel scrolls to its end: the verdict line of the report.
  await waitFor('the report in the output channel', async () => /^unhealthy: \d+ ok, \d+ warnings?, \d+ failed \(of \d+\)$/m.test(await vs.panelText()), 15_000);
  await vs.screenshot('health-report');

  await vs.runCommand('COI: Check Health');
  const again = await vs.waitForNotification(/COI health: unhealthy/, 60_000);
  await again.locator('.monaco-button', { hasText: 'Fix Problems…' }).click();
  await vs.quickInput().waitFor({ timeout: 10_000 });
  const rows = vs.quickInput().locator('.quick-input-list .monaco-list-row');
  await rows.first().waitFor({ timeout: 10_000 });
  const labels = (await rows.locator('.label-name').allTextContents()).map((s) => s.trim());
  assert.equal(labels[0], 'Incus', 'failed checks first');
  assert.ok(labels.includes('COI guard'), labels.join(', '));
  await vs.screenshot('health-problems');
  await vs.pickQuickItem('COI guard');
  // Its remedy (sudo coi guard start) with the bundled helper; root here, so no sudo. The shell is `cat`: nothing runs.
  const helperJs = join(vs.extensionDir(), 'dist', 'helper.js');
  await vs.waitForTerminalLine(`env ELECTRON_RUN_AS_NODE=1 ${process.execPath} ${helperJs} guard start`);
  await vs.page.locator('.part.panel').filter({ hasText: 'COI Fix: Start the guard' }).waitFor({ timeout: 10_000 });
  await vs.screenshot('health-fix-terminal');
});
