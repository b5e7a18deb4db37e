/**
 * The alert webview renders hostile events as inert text, in a real DOM: the
 * page the extension serves (its CSP, its nonce'd script dist/webview.js)
 * loaded into Debian's Chromium through playwright-core, the page's requests
 * answered in-process (page.route: nothing reaches the network), and only
 * VS Code's acquireVsCodeApi() supplied, recording what the page posts.
 *
 * Events whose every container-controlled field is HTML with handlers, or
 * carries ANSI and bidi escapes, must come out as exactly those characters
 * (control characters as visible \xNN escapes), with no element, attribute
 * handler or script created from them, and no CSP violation attempted.
 */
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, Browser, Page } from 'playwright-core';
import { alertsHtml } from '../../../extension/alerts/html';
import type { ToWebview } from '../../../extension/alerts/messages';
import { AlertEvent, visible, whatWasSeen } from '../../../extension/alerts/model';

const CHROMIUM = '/usr/bin/chromium';
const ORIGIN = 'http://coi-webview.test';
const SCRIPT = 'dist/webview.js';

const IMG = '<img src=x onerror="window.__pwned=1">';
const SCRIPT_TAG = '<script>window.__pwned=2</script>';
const ANSI = '\x1b[31mRED\x1b[0m\x1b]0;owned\x07';
const BIDI = 'evil\u202egnp.exe';
const SVG = '<svg onload="window.__pwned=3"></svg>';
const LINK = '"><a href="javascript:window.__pwned=4">click</a>';
const CMD_LINK = '[Kill all](command:coi.kill)';
const MITRE = '<b onclick="x()">T1</b>';

function hostile(id: string, level: AlertEvent['record']['level'], action: string): AlertEvent {
  return {
    container: 'coi-1a2b3c4d-1',
    ownerUid: 1000,
    auditPath: `/home/u/.coi/audit/coi-1a2b3c4d-1.jsonl`,
    record: {
      id,
      timestamp: '2026-11-27T07:44:20.483Z',
      level,
      category: `reverse_shell${IMG}`,
      title: `Reverse shell ${SVG}`,
      description: `${IMG} — ${ANSI} ${BIDI}`,
      evidence: {
        process: {
          pid: 27857,
          nsPid: 65,
          comm: IMG,
          exe: `/tmp/${SCRIPT_TAG}`,
          argv: ['sh', '-c', `${SCRIPT_TAG} ${ANSI}`, BIDI, CMD_LINK],
          uid: 0,
          lineage: [
            { pid: 27857, comm: IMG, argv: ['sh', ANSI] },
            { pid: 26496, comm: `bash${SVG}`, argv: ['bash', '-l', LINK] },
          ],
        },
        network: { proto: 'tcp', remote: `198.51.100.2${LINK}`, port: 4444, local: `10.213.0.183:49518${ANSI}`, state: 'ESTABLISHED', fds: [0, 1, 2] },
        filesystem: { readBytes: 115343360, windowMs: 1754, path: `/workspace/${IMG}` },
        dns: { name: `${ANSI}.example.invalid` },
        rule: `reverse-shell/${LINK}`,
        key: 'k1',
      },
      action,
      container: 'coi-1a2b3c4d-1',
      detector: `reverse-shell${SVG}`,
      mitre: ['T1059', MITRE],
      response: { detectedAt: '2026-11-27T07:44:20.483Z', frozenAt: '2026-11-27T07:44:20.485Z', containMs: 2, error: SCRIPT_TAG },
    },
  };
}

let browser: Browser;
let page: Page;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing (${CHROMIUM}): run \`bash .ci/install-vscode.sh\` (as root)`);
  if (!existsSync(SCRIPT)) throw new Error(`${SCRIPT} is missing: run \`node build.mjs\``);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  page = await browser.newPage();
  const html = alertsHtml({ cspSource: ORIGIN, scriptUri: `${ORIGIN}/webview.js`, codiconsUri: `${ORIGIN}/codicons/codicon.css`, nonce: 'n0nceForTheTest' });
  // Every request of the page is answered here; anything else is refused (and would fail the test below).
  const requested: string[] = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    requested.push(url);
    if (url === `${ORIGIN}/`) return route.fulfill({ status: 200, contentType: 'text/html', body: html });
    if (url === `${ORIGIN}/webview.js`) return route.fulfill({ status: 200, contentType: 'text/javascript', body: readFileSync(SCRIPT, 'utf8') });
    if (url === `${ORIGIN}/codicons/codicon.css`) return route.fulfill({ status: 200, contentType: 'text/css', body: readFileSync('dist/codicons/codicon.css', 'utf8') });
    if (url.startsWith(`${ORIGIN}/codicons/codicon.ttf`)) return route.fulfill({ status: 200, contentType: 'font/ttf', body: readFileSync('dist/codicons/codicon.ttf') });
    return route.abort();
  });
  (page as unknown as { requested: string[] }).requested = requested;
  await page.addInitScript(() => {
    const w = globalThis as unknown as Record<string, unknown> & { document: { addEventListener(t: string, f: (e: { violatedDirective: string }) => void): void } };
    w.__posted = [];
    w.__csp = [];
    w.document.addEventListener('securitypolicyviolation', (e) => (w.__csp as string[]).push(e.violatedDirective));
    w.acquireVsCodeApi = () => ({
      postMessage: (m: unknown) => (w.__posted as unknown[]).push(m),
      getState: () => w.__state,
      setState: (s: unknown) => (w.__state = s),
    });
  });
  await page.goto(`${ORIGIN}/`);
  await page.waitForFunction(() => ((globalThis as unknown as { __posted: { type: string }[] }).__posted ?? []).some((m) => m.type === 'ready'), null, { timeout: 10_000 });
});

after(async () => {
  await browser?.close();
});

const post = (m: ToWebview) => page.evaluate((msg) => (globalThis as unknown as { postMessage(m: unknown, o: string): void }).postMessage(msg, '*'), m);

/** What the page holds: every element's tag and on* attributes, the timeline's text, the canaries. */
interface Dom {
  tags: string[];
  handlers: string[];
  scripts: number;
  text: string;
  summaries: string[];
  pwned: unknown;
  csp: string[];
}
const readDom = () =>
  page.evaluate(() => {
    const w = globalThis as unknown as {
      document: { querySelectorAll(s: string): ArrayLike<{ tagName: string; attributes: ArrayLike<{ name: string }>; textContent: string | null }>; getElementById(id: string): { textContent: string | null } };
      __pwned: unknown;
      __csp: string[];
    };
    const all = Array.from(w.document.querySelectorAll('*'));
    return {
      tags: [...new Set(Array.from(w.document.querySelectorAll('#timeline *')).map((e) => e.tagName))].sort(),
      handlers: all.flatMap((e) => Array.from(e.attributes).filter((a) => /^on/i.test(a.name)).map((a) => `${e.tagName}.${a.name}`)),
      scripts: w.document.querySelectorAll('script').length,
      text: w.document.getElementById('timeline').textContent ?? '',
      summaries: Array.from(w.document.querySelectorAll('#timeline .summary')).map((e) => e.textContent ?? ''),
      pwned: w.__pwned,
      csp: w.__csp,
    } satisfies Dom;
  });

test('hostile HTML and terminal escapes in every field render as those characters, and create no element or handler', async () => {
  const crit = hostile('ev-critical', 'critical', 'paused');
  const warn = hostile('ev-warning', 'warning', 'alerted');
  await post({ type: 'init', events: [crit, warn], sandboxes: { 'coi-1a2b3c4d-1': { exists: true, state: 'frozen', slot: 1, snapshots: 1 } }, listed: true });
  await page.waitForFunction(() => (globalThis as unknown as { document: { querySelectorAll(s: string): ArrayLike<unknown> } }).document.querySelectorAll('#timeline li.event').length === 2, null, { timeout: 5_000 });
  // Give any injected handler (onerror of a broken image fires at once) time to run.
  await page.waitForTimeout(300);
  const dom = await readDom();

  // Only the elements the renderer makes; nothing from the data.
  assert.deepEqual(dom.tags, ['BUTTON', 'DD', 'DETAILS', 'DIV', 'DL', 'DT', 'LI', 'OL', 'SPAN', 'SUMMARY']);
  assert.deepEqual(dom.handlers, [], 'no on* attribute anywhere');
  assert.equal(dom.scripts, 1, 'only our nonce\'d script');
  assert.equal(dom.pwned, undefined, 'no injected code ran');
  assert.deepEqual(dom.csp, [], 'nothing even tried to break the CSP');
  // Severity and actions carry VS Code's icons, from the shipped codicon stylesheet, hidden from screen readers.
  const icons = await page.evaluate(() => {
    const d = (globalThis as unknown as { document: { querySelectorAll(s: string): ArrayLike<{ className: string; getAttribute(a: string): string | null }> } }).document;
    const g = globalThis as unknown as { getComputedStyle(e: unknown): { fontFamily: string } };
    return Array.from(d.querySelectorAll('.codicon')).map((e) => ({ cls: e.className, hidden: e.getAttribute('aria-hidden'), font: g.getComputedStyle(e).fontFamily }));
  });
  assert.ok(icons.some((i) => i.cls.includes('codicon-error')), JSON.stringify(icons));
  assert.ok(icons.some((i) => i.cls.includes('codicon-trash')), JSON.stringify(icons));
  assert.ok(icons.every((i) => i.hidden === 'true' && /codicon/.test(i.font)), JSON.stringify(icons));
  const ours = [`${ORIGIN}/`, `${ORIGIN}/webview.js`, `${ORIGIN}/codicons/codicon.css`];
  assert.deepEqual(
    (page as unknown as { requested: string[] }).requested.filter((u) => !ours.includes(u) && !u.startsWith(`${ORIGIN}/codicons/codicon.ttf`)),
    [],
    'no request but our page, script and icon font: none for an injected image or frame',
  );

  // The characters themselves are there, as text.
  for (const s of [IMG, SCRIPT_TAG, SVG, LINK, CMD_LINK, MITRE]) assert.ok(dom.text.includes(s), `the text holds ${JSON.stringify(s)}`);
  // Terminal and bidi escapes: shown as the escapes, never as raw control characters.
  assert.ok(dom.text.includes('\\x1b[31mRED\\x1b[0m\\x1b]0;owned\\x07'), 'ANSI shown as \\x1b…');
  assert.ok(dom.text.includes('evil\\u202egnp.exe'), 'bidi override shown as \\u202e');
  assert.doesNotMatch(dom.text, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, 'no raw control character in the DOM');
  // The one-line summary is exactly what the model says (what the notification says too).
  assert.equal(dom.summaries[0], whatWasSeen(crit.record));
  assert.equal(dom.summaries[0], `${IMG} with its stdin, stdout and stderr on a socket to ${visible(`198.51.100.2${LINK}`)}:4444`);
});

test('the actions that apply are buttons, reachable and pressed by keyboard; "Open audit line" asks for the raw line', async () => {
  const first = page.locator('#timeline li.event').first();
  assert.deepEqual((await first.locator('.actions button').allTextContents()).map((s) => s.trim()), ['Resume', 'Kill', 'Restore Snapshot', 'Open audit line']);
  await first.locator('button', { hasText: 'Kill' }).focus();
  await page.keyboard.press('Enter');
  await first.locator('button', { hasText: 'Open audit line' }).focus();
  await page.keyboard.press('Space');
  const posted = await page.evaluate(() => (globalThis as unknown as { __posted: unknown[] }).__posted);
  assert.deepEqual(posted.slice(-2), [
    { type: 'action', action: 'kill', container: 'coi-1a2b3c4d-1', id: 'ev-critical' },
    { type: 'openAudit', container: 'coi-1a2b3c4d-1', id: 'ev-critical' },
  ]);
  // The evidence opens from the keyboard too (a native <details>).
  await first.locator('summary').focus();
  await page.keyboard.press('Enter');
  assert.equal(await first.locator('details').getAttribute('open'), '');
});

test('filters by sandbox and severity, kept in the page state for the next load', async () => {
  await page.selectOption('#filter-level', 'critical');
  assert.equal(await page.locator('#timeline li.event').count(), 1);
  assert.match((await page.locator('#count').textContent()) ?? '', /^1 of 2 events$/);
  const state = (await page.evaluate(() => (globalThis as unknown as { __state: unknown }).__state)) as { minLevel: string; sandbox: string; open: string[] };
  assert.equal(state.minLevel, 'critical');
  assert.deepEqual(state.open, ['ev-critical']);
  await page.selectOption('#filter-sandbox', 'coi-1a2b3c4d-1');
  await page.selectOption('#filter-level', 'info');
  assert.equal(await page.locator('#timeline li.event').count(), 2);
  // A sandbox that is gone: no action but the audit line.
  await post({ type: 'sandboxes', sandboxes: {}, listed: true });
  assert.deepEqual((await page.locator('#timeline li.event').first().locator('.actions button').allTextContents()).map((s) => s.trim()), ['Open audit line']);
});
