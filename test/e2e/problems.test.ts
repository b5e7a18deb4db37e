// When Incus and the guard cannot be reached, the view says so (never empty) and
// its fix-it runs "Set Up This Machine". The terminal's shell is `cat` here, so
// the set-up command line is shown but never run on this machine.
// Screenshots: test-artifacts/e2e/problems/.
import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { VsCode } from './harness';

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
