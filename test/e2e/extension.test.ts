// The packaged extension in a real VS Code against the real Incus: lazy start of
// the helper, the Sandboxes view, the palette command, crash recovery and shutdown.
// Screenshots: test-artifacts/e2e/extension/.
import { strict as assert } from 'node:assert';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, test } from 'node:test';
import { repoRoot } from '../support/vsix';
import { VsCode, waitFor } from './harness';

const CONTAINER = 'coi';
const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
// The oracle for what the tree must show: the incus CLI, not our own client.
const incusVersion = /^Server version: (\S+)$/m.exec(execFileSync('incus', ['version'], { encoding: 'utf8' }))?.[1];

// A guard socket of our own, so the test neither depends on nor disturbs a guard the machine runs.
const guardDir = mkdtempSync(join(tmpdir(), 'coi-e2e-guard-'));
const guardSocket = join(guardDir, 'guard.sock');
let guard: ChildProcess | undefined;
let vs: VsCode;

before(async () => {
  assert.ok(incusVersion, '`incus version` must print the server version: is Incus running?');
  // A container prefix of its own: sandboxes of other runs on the machine are not this tree's business.
  vs = await VsCode.start({ name: 'extension', env: { COI_GUARD_SOCKET: guardSocket, COI_CONTAINER_PREFIX: `coi-ex${randomBytes(2).toString('hex')}-` } });
});

after(async () => {
  await vs?.stop();
  if (guard?.pid && guard.exitCode === null) {
    const exited = new Promise((r) => guard!.once('exit', r));
    guard.kill('SIGTERM');
    await exited;
  }
  // Its tables outlive the guard by design; scope e2e is this test's own.
  for (const [family, table] of [['inet', 'coi_guard_e2e'], ['netdev', 'coi_guard_ingress_e2e']]) execFileSync('nft', ['-f', '-'], { input: `table ${family} ${table}\ndelete table ${family} ${table}\n` });
  rmSync(guardDir, { recursive: true, force: true });
});

test('installing and opening VS Code spawns no helper: activation waits for a COI view or command', async () => {
  await vs.activityBarItem('COI').waitFor({ timeout: 60_000 });
  // Give an eager activation every chance to show itself: the extension host is up once the Explorer shows the folder.
  await vs.page.locator('.explorer-folders-view, .explorer-viewlet').first().waitFor({ timeout: 60_000 });
  await new Promise((r) => setTimeout(r, 5_000));
  await vs.screenshot('workbench-before-coi');
  assert.deepEqual(vs.helperPids(), [], 'no helper before the COI view is opened');
});

const STATUS_ITEM = '[id="coi.coi-vscode.coi.status"]';

test('opening the COI view starts one helper; the tree shows the folder, the real Incus version and the missing guard with its fix', async () => {
  assert.equal(await vs.page.locator(STATUS_ITEM).count(), 0, 'no status bar item before activation');
  const container = await vs.openViewContainer('COI', CONTAINER);
  const incusRow = await vs.waitForTreeItem(CONTAINER, `Incus ${incusVersion}`);
  await vs.waitForTreeItem(CONTAINER, 'The COI guard is not running');
  assert.deepEqual(await vs.treeLabels(CONTAINER), [basename(vs.folder), `Incus ${incusVersion}`, 'The COI guard is not running']);
  assert.match((await incusRow.locator('.label-description').textContent()) ?? '', /^API \d+\.\d+$/);
  // The problem item carries its fix as an inline action (contextValue + the when clause in package.json).
  const guardRow = vs.treeItems(CONTAINER, 'The COI guard is not running').first();
  await guardRow.hover();
  assert.equal(await guardRow.locator('.actions .action-label[aria-label="Set Up This Machine"]').count(), 1, 'inline "Set Up This Machine" on the guard problem');
  assert.equal(await vs.treeItems(CONTAINER, basename(vs.folder)).first().locator('.actions .action-label[aria-label="Open Workspace in COI Sandbox"]').count(), 1);
  await vs.screenshot('sandboxes-view', container);
  await vs.screenshot('sandboxes-view-window');

  const pids = await waitFor('one helper', () => (vs.helperPids().length === 1 ? vs.helperPids() : undefined), 10_000);
  assert.equal(pids.length, 1);
  const status = vs.page.locator(STATUS_ITEM);
  await status.waitFor({ timeout: 10_000 });
  assert.match((await status.textContent()) ?? '', /COI/);
  await vs.screenshot('status-bar-item', status);
});

test('with a guard running, Refresh shows it and "COI: Show Helper and Incus Versions" names all three versions', async () => {
  guard = spawn(process.execPath, [join(repoRoot, 'dist', 'helper.js'), 'guard', 'run'], {
    // A scope of its own, so this guard neither fences the host's sandboxes nor fights the host's guard for its tables.
    env: { ...process.env, COI_GUARD_SOCKET: guardSocket, COI_GUARD_SCOPE: 'e2e', COI_NET_STATE_DIR: join(guardDir, 'net'), COI_NET_CACHE_DIR: join(guardDir, 'cache') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let guardLog = '';
  guard.stderr!.on('data', (d: Buffer) => (guardLog += d.toString()));
  await waitFor(`the guard's socket (${guardLog})`, () => existsSync(guardSocket), 15_000);

  await vs.runCommand('COI: Refresh');
  await vs.waitForTreeItem(CONTAINER, `Guard ${version}`, 30_000);
  assert.deepEqual(await vs.treeLabels(CONTAINER), [basename(vs.folder), `Incus ${incusVersion}`, `Guard ${version}`]);
  await vs.screenshot('sandboxes-view-guard-running', vs.viewContainer(CONTAINER));

  await vs.runCommand('COI: Show Helper and Incus Versions');
  const toast = await vs.waitForNotification(`COI helper ${version}`);
  await vs.screenshot('versions-notification', toast);
  await vs.screenshot('versions-notification-window');
  const text = ((await toast.locator('.notification-list-item-message').textContent()) ?? '').trim();
  assert.match(text, new RegExp(`^COI helper ${version.replace(/\./g, '\\.')} \\(Node v\\d+\\.\\d+\\.\\d+\\) · Incus ${incusVersion!.replace(/\./g, '\\.')} \\(API \\d+\\.\\d+\\) · guard ${version.replace(/\./g, '\\.')}$`));
});

test('a killed helper is restarted, the view recovers, and the COI log says what happened', async () => {
  const [first] = vs.helperPids();
  assert.ok(first);
  process.kill(first, 'SIGKILL');
  const second = await waitFor('a new helper', () => vs.helperPids().find((p) => p !== first), 20_000);
  assert.notEqual(second, first);
  await vs.runCommand('COI: Refresh');
  await vs.waitForTreeItem(CONTAINER, `Incus ${incusVersion}`);
  assert.deepEqual(vs.helperPids(), [second], 'exactly one helper after the restart');

  await vs.runCommand('COI: Show Log');
  await waitFor('the crash in the COI log', async () => /helper died \(killed by SIGKILL\); restarting in \d+ ms/.test(await vs.panelText()), 20_000);
  await vs.screenshot('coi-log-after-crash');
});

test('reloading the window stops the old helper (its extension host ends) and the view comes back with a new one', async () => {
  // code-server's web workbench has no "Restart Extension Host"; a reload ends the
  // extension host of the old window, which deactivates COI.
  const before = vs.helperPids();
  assert.equal(before.length, 1);
  await vs.runCommand('Developer: Reload Window');
  await waitFor('the old helper to exit', () => !vs.helperPids().includes(before[0]!), 30_000);
  // The COI view is restored, so the new extension host activates COI again.
  await vs.waitForTreeItem(CONTAINER, `Incus ${incusVersion}`, 90_000);
  await waitFor('a new helper', () => vs.helperPids().length === 1, 10_000);
  await vs.screenshot('after-reload');
});

test('closing VS Code leaves no helper behind', async () => {
  assert.ok(vs.helperPids().length >= 1);
  await vs.killServer('SIGTERM');
  await waitFor('no helper left', () => vs.helperPids().length === 0, 20_000);
});
