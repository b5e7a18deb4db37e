// Sandboxes in the real VS Code against the real Incus: "Open Workspace in COI
// Sandbox" from the Palette (answering its quick picks), the slot in the tree,
// the sandbox's shell in the agent terminal, the status bar, the terminal back
// after a window reload (the agent survived its terminal), the "COI Sandbox"
// terminal profile, a snapshot created
// from the slot's context menu appearing under it, and "Kill" removing the slot.
// The helper inherits HOME (whose ~/.coi/config.toml picks the base image and a
// shell as the tool) and a unique COI_CONTAINER_PREFIX from code-server.
// Screenshots: test-artifacts/e2e/sandboxes/.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { IncusClient } from '../../helper/incus/client';
import { UnixSocketTransport } from '../../helper/incus/transport';
import { VsCode, waitFor } from './harness';

const CONTAINER = 'coi';
const PREFIX = `coi-e${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync(join(tmpdir(), 'coi-e2e-sandboxes-'));
const home = join(root, 'home');
const folder = join(root, 'demo-project');
const STATUS_ITEM = '[id="coi.coi-vscode.coi.status"]';
const incus = new IncusClient(new UnixSocketTransport());
let vs: VsCode;
let name = '';
const timings: string[] = [];
const t0 = Date.now();
const mark = (what: string) => timings.push(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${what}`);

const ours = async () => (await incus.listInstances()).filter((i) => i.name.startsWith(PREFIX));

before(async () => {
  mkdirSync(join(home, '.coi'), { recursive: true });
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n[tool]\nname = "shell"\n');
  writeFileSync(join(folder, 'README.md'), '# demo\n');
  vs = await VsCode.start({
    name: 'sandboxes',
    folder,
    // The host's guard: a sandbox starts only once the guard has fenced its network.
    env: { HOME: home, COI_CONTAINER_PREFIX: PREFIX },
  });
  mark('VS Code up');
});

after(async () => {
  await vs?.stop();
  for (const i of await ours().catch(() => [])) await incus.deleteInstance(i.name, { force: true }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
  mark('cleaned up');
  process.stderr.write(`sandboxes e2e timings:\n  ${timings.join('\n  ')}\n`);
});

test('"Open Workspace in COI Sandbox" from the Palette: quick picks, the slot in the tree, the shell in the agent terminal, the status bar', async () => {
  const view = await vs.openViewContainer('COI', CONTAINER);
  const wsRow = await vs.waitForTreeItem(CONTAINER, 'demo-project');
  await waitFor('"no sandbox yet"', async () => /no sandbox yet/.test((await wsRow.textContent()) ?? ''), 60_000);
  await vs.screenshot('view-before', view);
  mark('view shows the workspace');

  await vs.runCommand('COI: Open Workspace in COI Sandbox');
  await vs.pickQuickItem('shell');
  await vs.screenshot('pick-2-slot');
  await vs.pickQuickItem('Auto');
  await vs.screenshot('pick-3-profile');
  await vs.pickQuickItem('As configured: default');
  await vs.screenshot('pick-4-persistent');
  await vs.pickQuickItem('Ephemeral');
  mark('quick picks answered');
  const progress = vs.notification(/opening demo-project in a sandbox/);
  if (await progress.count()) await vs.screenshot('opening', progress.first()).catch(() => undefined);

  // Running: its description is just tool and persistence. A failed launch ends the wait with its error.
  const slot = vs.treeItems(CONTAINER, /slot 1/).first();
  await waitFor('slot 1 running', async () => {
    const error = vs.page.locator('.notifications-toasts .notification-toast').filter({ has: vs.page.locator('.codicon-error') });
    if (await error.count()) throw new Error(`the open failed: ${await error.first().locator('.notification-list-item-message').textContent()}`);
    if (!(await slot.count())) return false;
    return /shell · ephemeral$/.test(((await slot.locator('.label-description').textContent({ timeout: 1_000 }).catch(() => '')) ?? '').trim());
  }, 180_000);
  mark('slot 1 running in the tree');
  const [inst] = await ours();
  assert.ok(inst, `an instance named ${PREFIX}… exists`);
  name = inst.name;
  assert.equal(inst.status, 'Running');
  assert.equal(inst.config?.['user.coi.workspace'], realpathSync(folder));
  assert.equal(inst.config?.['user.coi.tool'], 'shell');
  assert.equal(inst.config?.['user.coi.persistent'], 'false');
  assert.match((await slot.getAttribute('aria-label')) ?? '', new RegExp(`${name} — running`), 'the tooltip names the container');
  await vs.screenshot('slot-in-tree', vs.viewContainer(CONTAINER));

  // The agent terminal: named after folder and slot, attached to the tmux session's bash.
  const prompt = await vs.waitForTerminalMatch(new RegExp(`^code@${name}:/workspace\\$`), 60_000);
  mark(`shell prompt in the terminal: ${prompt}`);
  await vs.page.locator('.part.panel').filter({ hasText: 'demo-project · slot 1' }).first().waitFor({ timeout: 10_000 });
  await vs.screenshot('agent-terminal');

  const status = vs.page.locator(STATUS_ITEM);
  await waitFor('the status bar', async () => /COI: running \(slot 1\)/.test((await status.textContent()) ?? ''), 15_000);
  await vs.screenshot('status-bar', status);
});

test('the agent outlives its terminal: after a window reload the slot still runs and its terminal is back', async () => {
  // A mark in the old page, gone once the window has really reloaded.
  await vs.page.evaluate(() => ((globalThis as unknown as { __coiOldWindow: boolean }).__coiOldWindow = true));
  await vs.runCommand('Developer: Reload Window');
  await vs.page.waitForFunction(() => !(globalThis as unknown as { __coiOldWindow?: boolean }).__coiOldWindow, null, { timeout: 60_000 });
  await vs.page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  await vs.waitForTreeItem(CONTAINER, /slot 1/, 120_000);
  mark('reloaded: slot 1 in the tree');
  await vs.waitForTerminalMatch(new RegExp(`^code@${name}:/workspace\\$`), 60_000);
  await vs.page.locator('.part.panel').filter({ hasText: 'demo-project · slot 1' }).first().waitFor({ timeout: 10_000 });
  mark('reloaded: terminal re-attached');
  assert.equal((await incus.getInstance(name)).status, 'Running');
  await vs.screenshot('after-reload');
});

test('the "COI Sandbox" terminal profile attaches another terminal to the running slot', async () => {
  await vs.runCommand('Create New Terminal (With Profile)', { opensInput: true });
  await vs.pickQuickItem('COI Sandbox');
  const agentTabs = vs.page.locator('.part.panel .monaco-list-row').filter({ hasText: 'demo-project · slot 1' });
  await waitFor('two agent terminals in the panel', async () => (await agentTabs.count()) === 2, 30_000);
  await vs.waitForTerminalMatch(new RegExp(`^code@${name}:/workspace\\$`), 60_000);
  mark('terminal profile attached');
  await vs.screenshot('terminal-profile');
});

test('"Create Snapshot" from the slot\'s context menu: the snapshot shows under the slot', async () => {
  const slot = await vs.waitForTreeItem(CONTAINER, /slot 1/);
  await vs.contextMenu(slot, 'Create Snapshot');
  await vs.screenshot('snapshot-name');
  await vs.answerInputBox('e2e-snap');
  const snap = await vs.waitForTreeItem(CONTAINER, 'e2e-snap', 60_000);
  mark('snapshot under the slot');
  assert.equal(await snap.getAttribute('aria-level'), '3', 'under the slot, under the workspace');
  const snaps = await incus.get<{ name: string }[]>(`/1.0/instances/${name}/snapshots?recursion=1`);
  assert.deepEqual(
    snaps.map((s) => s.name.split('/').pop()),
    ['e2e-snap'],
  );
  await vs.screenshot('snapshot-in-tree', vs.viewContainer(CONTAINER));
});

test('"Kill" on the slot (confirmed) deletes the container and the slot leaves the tree', async () => {
  const slot = await vs.waitForTreeItem(CONTAINER, /slot 1/);
  await vs.contextMenu(slot, 'Kill');
  const dialog = vs.dialog();
  await dialog.waitFor({ timeout: 10_000 });
  assert.match((await dialog.textContent()) ?? '', /Kill slot 1/);
  await vs.screenshot('kill-confirm');
  await dialog.getByRole('button', { name: 'Kill', exact: true }).click();
  await waitFor('slot 1 gone from the tree', async () => (await vs.treeItems(CONTAINER, /slot 1/).count()) === 0, 60_000);
  mark('slot gone from the tree');
  await waitFor('"no sandbox yet"', async () => /no sandbox yet/.test((await vs.treeItems(CONTAINER, 'demo-project').first().textContent()) ?? ''), 15_000);
  // The tree drops the slot on the first event (its snapshot's deletion) that finds the instance unloadable;
  // Incus still lists it, status Error and no config, until its delete operation ends a moment later.
  await waitFor('Incus to have no instance of ours left', async () => (await ours()).length === 0, 30_000);
  // Its agent terminals (ours and the profile's) have nothing left to show: they are closed.
  await waitFor('the agent terminals closed', async () => (await vs.page.locator('.part.panel').filter({ hasText: 'demo-project · slot 1' }).count()) === 0, 15_000);
  await vs.screenshot('after-kill', vs.viewContainer(CONTAINER));
  await vs.screenshot('after-kill-window');
});

// An oracle that is not our code: the incus CLI sees nothing of ours either.
test('the incus CLI agrees nothing is left', () => {
  const out = execFileSync('incus', ['list', '--format', 'csv', '-c', 'n'], { encoding: 'utf8' });
  assert.ok(!out.split('\n').some((l) => l.startsWith(PREFIX)), out);
});
