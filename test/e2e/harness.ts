/**
 * End-to-end harness: the packaged extension in a real VS Code (code-server,
 * whose extension host runs in Node on this machine), driven through Debian's
 * Chromium with playwright-core. Recipe and selectors: shared/vscode.md.
 *
 *   const vs = await VsCode.start({ name: 'extension' });
 *   await vs.runCommand('COI: Refresh');
 *   await vs.screenshot('after-refresh');
 *   await vs.stop();               // always: kills code-server and everything it started
 *
 * Nothing here skips: a missing code-server, Chromium or .vsix throws with the
 * command that installs it. Artefacts (screenshots, code-server's log, the browser
 * console) go to test-artifacts/e2e/<name>/.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, Browser, Locator, Page } from 'playwright-core';
import { packageVsix, repoRoot } from '../support/vsix';

export { listZip, packageVsix } from '../support/vsix';

export const CODE_SERVER_VERSION = '4.100.3';
export const CHROMIUM = '/usr/bin/chromium';
const INSTALL_HINT = 'run `bash .ci/install-vscode.sh` (as root)';

export function codeServerDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.COI_CODE_SERVER_DIR || '/var/cache/coi/code-server';
}

/** The code-server entry point and the browser, or an error that says how to get them. */
export function requireComponents(env: NodeJS.ProcessEnv = process.env): { codeServer: string; chromium: string } {
  const dir = codeServerDir(env);
  const entry = join(dir, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
  if (!existsSync(join(dir, `.installed-${CODE_SERVER_VERSION}`)) || !existsSync(entry)) {
    throw new Error(`code-server ${CODE_SERVER_VERSION} is not installed in ${dir}: ${INSTALL_HINT}`);
  }
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing (${CHROMIUM}): ${INSTALL_HINT}`);
  return { codeServer: entry, chromium: CHROMIUM };
}



export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Pids of processes whose command line contains `needle` (what `pgrep -f` does, without its regex). */
export function pgrep(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids.filter((pid) => pid !== process.pid);
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** User settings that keep the workbench quiet and the terminal's text in the DOM (vscode.md §4). */
export const defaultSettings: Record<string, unknown> = {
  'workbench.startupEditor': 'none',
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'workbench.tips.enabled': false,
  'terminal.integrated.gpuAcceleration': 'off',
  'editor.accessibilitySupport': 'on',
  'chat.disableAIFeatures': true,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
};

export interface VsCodeOptions {
  /** Names the artefact folder test-artifacts/e2e/<name>/. */
  name: string;
  /** Extra environment for code-server, hence for the extension host and the helper it spawns. */
  env?: Record<string, string>;
  /** Folder to open; default: a fresh `demo-project` folder in the temp dir. */
  folder?: string;
  settings?: Record<string, unknown>;
  vsix?: string;
}

export class VsCode {
  private shotCount = 0;
  private readonly consoleLines: string[] = [];
  private stopped = false;

  private constructor(
    readonly tmp: string,
    readonly artifacts: string,
    readonly extensionsDir: string,
    readonly folder: string,
    readonly url: string,
    private readonly server: ChildProcess,
    private readonly browser: Browser,
    readonly page: Page,
  ) {}

  /**
   * Installs the .vsix into a fresh profile, starts code-server on a free port,
   * opens the folder in Chromium and waits for the workbench. On any failure
   * everything started so far is stopped before the error is thrown.
   */
  static async start(opts: VsCodeOptions): Promise<VsCode> {
    const { codeServer, chromium: chromiumPath } = requireComponents();
    const vsix = opts.vsix ?? packageVsix();
    const artifacts = join(repoRoot, 'test-artifacts', 'e2e', opts.name);
    rmSync(artifacts, { recursive: true, force: true });
    mkdirSync(artifacts, { recursive: true });

    const tmp = mkdtempSync(join(tmpdir(), 'coi-e2e-'));
    const dirs = {
      userData: join(tmp, 'user-data'),
      extensions: join(tmp, 'extensions'),
      xdgData: join(tmp, 'xdg-data'),
      xdgConfig: join(tmp, 'xdg-config'),
    };
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
    mkdirSync(join(dirs.userData, 'User'), { recursive: true });
    writeFileSync(join(dirs.userData, 'User', 'settings.json'), JSON.stringify({ ...defaultSettings, ...opts.settings }, null, 2));
    const config = join(tmp, 'config.yaml');
    writeFileSync(config, 'auth: none\ncert: false\n');
    const folder = opts.folder ?? join(tmp, 'demo-project');
    mkdirSync(folder, { recursive: true });

    // Without these, code-server writes a config with a password and logs under $HOME.
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_DATA_HOME: dirs.xdgData, XDG_CONFIG_HOME: dirs.xdgConfig, ...opts.env };
    delete env.VSCODE_IPC_HOOK_CLI;
    const common = ['--config', config, '--user-data-dir', dirs.userData, '--extensions-dir', dirs.extensions];
    const install = spawnSync(process.execPath, [codeServer, ...common, '--install-extension', vsix], { env, encoding: 'utf8', timeout: 120_000 });
    writeFileSync(join(artifacts, 'install-extension.log'), `${install.stdout}\n${install.stderr}`);
    if (install.status !== 0) {
      rmSync(tmp, { recursive: true, force: true });
      throw new Error(`code-server --install-extension ${vsix} failed (${install.status ?? install.signal}):\n${install.stdout}\n${install.stderr}`);
    }

    const port = await freePort();
    const serverLog = createWriteStream(join(artifacts, 'code-server.log'));
    // Its own process group, so stop() can take down code-server and everything under it.
    const server = spawn(
      process.execPath,
      [
        codeServer,
        ...common,
        '--auth', 'none',
        '--bind-addr', `127.0.0.1:${port}`,
        '--disable-telemetry',
        '--disable-update-check',
        '--disable-workspace-trust',
        '--disable-getting-started-override',
        folder,
      ],
      { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    server.stdout!.pipe(serverLog, { end: false });
    server.stderr!.pipe(serverLog, { end: false });
    let exited: string | undefined;
    server.once('exit', (code, signal) => (exited = `code-server exited (${signal ?? code})`));

    let browser: Browser | undefined;
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor('code-server /healthz', async () => {
        if (exited) throw new Error(`${exited}; see ${join(artifacts, 'code-server.log')}`);
        try {
          return (await fetch(`${base}/healthz`)).ok;
        } catch {
          return false;
        }
      }, 60_000);
      browser = await chromium.launch({
        executablePath: chromiumPath,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
      const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
      const page = await context.newPage();
      const url = `${base}/?folder=${encodeURIComponent(folder)}`;
      const vs = new VsCode(tmp, artifacts, dirs.extensions, folder, url, server, browser, page);
      page.on('console', (m) => vs.consoleLines.push(`${m.type()} ${m.text()}`));
      page.on('pageerror', (e) => vs.consoleLines.push(`pageerror ${e.message}`));
      await page.goto(url);
      await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
      return vs;
    } catch (e) {
      await browser?.close().catch(() => undefined);
      killGroup(server);
      serverLog.end();
      if (!process.env.COI_E2E_KEEP) rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }

  /** Where the installed extension lives: its helper's command line contains this. */
  extensionDir(id = 'coi.coi-vscode'): string {
    const found = readdirSync(this.extensionsDir).find((d) => d.startsWith(`${id}-`));
    if (!found) throw new Error(`extension ${id} is not installed in ${this.extensionsDir}`);
    return join(this.extensionsDir, found);
  }

  /** Pids of the COI helpers this VS Code runs (`pgrep -f '<ext>/dist/helper.js --stdio'`). */
  helperPids(): number[] {
    return pgrep(`${join(this.extensionDir(), 'dist', 'helper.js')} --stdio`);
  }

  // ── the workbench ─────────────────────────────────────────────────────────

  /** The activity-bar entry of a view container, by its title. */
  activityBarItem(title: string): Locator {
    return this.page.locator(`.activitybar .action-item a[aria-label^="${title}"]`);
  }

  /** Opens a view container from the activity bar; returns the container's element. */
  async openViewContainer(title: string, containerId: string): Promise<Locator> {
    const item = this.activityBarItem(title);
    await item.waitFor({ timeout: 60_000 });
    await item.click();
    const container = this.viewContainer(containerId);
    await container.waitFor({ timeout: 30_000 });
    return container;
  }

  viewContainer(containerId: string): Locator {
    return this.page.locator(`[id="workbench.view.extension.${containerId}"]`);
  }

  /** Tree rows of a view container (role=treeitem), optionally those containing `text`. */
  treeItems(containerId: string, text?: string | RegExp): Locator {
    const rows = this.viewContainer(containerId).locator('.monaco-list-row');
    return text === undefined ? rows : rows.filter({ hasText: text });
  }

  async waitForTreeItem(containerId: string, text: string | RegExp, timeoutMs = 60_000): Promise<Locator> {
    const row = this.treeItems(containerId, text).first();
    await row.waitFor({ timeout: timeoutMs });
    return row;
  }

  /** The labels of the visible tree rows, in order. */
  async treeLabels(containerId: string): Promise<string[]> {
    return (await this.viewContainer(containerId).locator('.monaco-list-row .label-name').allTextContents()).map((s) => s.trim());
  }

  /**
   * Runs a command from the Command Palette by its full title ("COI: Refresh").
   * `opensInput`: the command opens a quick pick of its own, so the widget stays.
   */
  async runCommand(title: string, opts: { opensInput?: boolean } = {}): Promise<void> {
    const input = this.page.locator('.quick-input-widget input.input');
    await this.page.keyboard.press('Escape');
    await this.page.keyboard.press('F1');
    await input.waitFor({ timeout: 15_000 });
    await input.fill(`>${title}`);
    const row = this.page
      .locator('.quick-input-list .monaco-list-row')
      .filter({ has: this.page.locator('.label-name', { hasText: new RegExp(`^\\s*${escapeRegExp(title)}\\s*$`) }) })
      .first();
    try {
      await row.waitFor({ timeout: 15_000 });
    } catch (e) {
      await this.screenshot(`palette-without-${title}`).catch(() => undefined);
      throw e;
    }
    await row.click();
    if (!opts.opensInput) await this.page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 15_000 });
  }

  /** A notification toast containing `text`. Toasts hide after a while: screenshot them at once. */
  notification(text: string | RegExp): Locator {
    return this.page.locator('.notifications-toasts .notification-toast').filter({ hasText: text });
  }

  async waitForNotification(text: string | RegExp, timeoutMs = 30_000): Promise<Locator> {
    const toast = this.notification(text).first();
    await toast.waitFor({ timeout: timeoutMs });
    return toast;
  }

  /** The buttons' labels of a toast. */
  async notificationButtons(toast: Locator): Promise<string[]> {
    return (await toast.locator('.notification-list-item-buttons-container .monaco-button').allTextContents()).map((s) => s.trim());
  }

  /** Waits for a terminal line that equals `line` exactly (the echoed command line contains it too). */
  async waitForTerminalLine(line: string, timeoutMs = 30_000): Promise<void> {
    await this.page.waitForFunction(
      (want) => {
        // Runs in the page (tsconfig has no DOM lib).
        const doc = (globalThis as unknown as { document: { querySelectorAll(s: string): Iterable<{ textContent: string | null }> } }).document;
        return [...doc.querySelectorAll('.terminal-wrapper .xterm-rows > div, .terminal-wrapper .xterm-accessibility-tree > div')].some(
          (r) => (r.textContent ?? '').trim() === want,
        );
      },
      line,
      { polling: 500, timeout: timeoutMs },
    );
  }

  /** Waits for a terminal line matching `re` (trimmed); returns it. */
  async waitForTerminalMatch(re: RegExp, timeoutMs = 30_000): Promise<string> {
    const handle = await this.page.waitForFunction(
      ([source, flags]) => {
        const doc = (globalThis as unknown as { document: { querySelectorAll(s: string): Iterable<{ textContent: string | null }> } }).document;
        const r = new RegExp(source, flags);
        return [...doc.querySelectorAll('.terminal-wrapper .xterm-rows > div, .terminal-wrapper .xterm-accessibility-tree > div')].map((x) => (x.textContent ?? '').trim()).find((t) => r.test(t)) ?? false;
      },
      [re.source, re.flags] as const,
      { polling: 500, timeout: timeoutMs },
    );
    return (await handle.jsonValue()) as string;
  }

  /** The open quick pick (or input box). */
  quickInput(): Locator {
    return this.page.locator('.quick-input-widget');
  }

  /** Clicks the quick pick row whose label is exactly `label`, once it shows. */
  async pickQuickItem(label: string, timeoutMs = 30_000): Promise<void> {
    const row = this.page
      .locator('.quick-input-widget .quick-input-list .monaco-list-row')
      .filter({ has: this.page.locator('.label-name', { hasText: new RegExp(`^\\s*${escapeRegExp(label)}\\s*$`) }) })
      .first();
    await row.waitFor({ timeout: timeoutMs });
    await row.click();
  }

  /** Types into the open input box and presses Enter. */
  async answerInputBox(text: string, timeoutMs = 15_000): Promise<void> {
    const input = this.page.locator('.quick-input-widget input.input');
    await input.waitFor({ timeout: timeoutMs });
    await input.fill(text);
    await input.press('Enter');
  }

  /** Right-clicks a tree row and runs the context-menu entry `item`. */
  async contextMenu(row: Locator, item: string, timeoutMs = 15_000): Promise<void> {
    await row.click({ button: 'right' });
    const entry = this.page.getByRole('menuitem', { name: item, exact: true }).first();
    await entry.waitFor({ timeout: timeoutMs });
    await entry.hover();
    await entry.click();
    // A click that lands while the menu is still laying itself out is lost; the entry is highlighted by then, so Enter runs it.
    try {
      await entry.waitFor({ state: 'hidden', timeout: 2_000 });
    } catch {
      await this.page.keyboard.press('Enter');
      await entry.waitFor({ state: 'hidden', timeout: timeoutMs });
    }
  }

  /** The modal dialog (showWarningMessage with modal: true). */
  dialog(): Locator {
    return this.page.locator('.monaco-dialog-box');
  }

  /** The text of the visible lines of the editor in the panel (the Output view). */
  async panelText(): Promise<string> {
    const lines = this.page.locator('.part.panel .monaco-editor .view-lines');
    if ((await lines.count()) === 0) return '';
    return (await lines.first().innerText()).replace(/\u00a0/g, ' ');
  }

  /** Saves a PNG (the window, or one element) as test-artifacts/e2e/<name>/NN-<label>.png. */
  async screenshot(label: string, element?: Locator): Promise<string> {
    const file = join(this.artifacts, `${String(++this.shotCount).padStart(2, '0')}-${label.replace(/[^\w.-]+/g, '-')}.png`);
    if (element) await element.screenshot({ path: file });
    else await this.page.screenshot({ path: file });
    return file;
  }

  /**
   * Always call this (in `after`): a last screenshot, the browser console to the
   * artefacts, the browser closed, code-server's process group killed (TERM, then
   * KILL), the temp profile removed unless COI_E2E_KEEP=1.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.screenshot('final').catch(() => undefined);
    writeFileSync(join(this.artifacts, 'browser-console.log'), this.consoleLines.join('\n') + '\n');
    this.saveOutputLogs();
    await this.browser.close().catch(() => undefined);
    await killGroupAndWait(this.server);
    if (!process.env.COI_E2E_KEEP) rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Copies the COI output channel's log of each extension host (one per window load) to the artefacts. */
  private saveOutputLogs(): void {
    const found: string[] = [];
    const walk = (dir: string) => {
      let entries: string[];
      try {
        entries = readdirSync(dir);
      } catch {
        return;
      }
      for (const e of entries) {
        const p = join(dir, e);
        if (e === 'COI.log') found.push(p); // <logs>/<session>/exthostN/coi.coi-vscode/COI.log
        else if (!e.endsWith('.log')) walk(p);
      }
    };
    walk(join(this.tmp, 'user-data', 'logs'));
    found.sort().forEach((f, i) => {
      try {
        writeFileSync(join(this.artifacts, `coi-output-${i + 1}.log`), readFileSync(f));
      } catch {
        // unreadable: skip
      }
    });
  }

  /** Stops code-server alone (the browser stays), as a crash or a closed window would: for tests of what follows. */
  async killServer(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.server.pid) process.kill(this.server.pid, signal);
    await new Promise<void>((r) => (this.server.exitCode !== null || this.server.signalCode !== null ? r() : this.server.once('exit', () => r())));
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (!child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

async function killGroupAndWait(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!child.pid) return;
  const pgid = child.pid;
  killGroup(child, 'SIGTERM');
  const groupAlive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const end = Date.now() + graceMs;
  while (groupAlive() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  if (groupAlive()) killGroup(child, 'SIGKILL');
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
