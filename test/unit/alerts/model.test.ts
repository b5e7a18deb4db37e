import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { locateAuditLine, recentAudit } from '../../../helper/core/audit';
import { alertsHtml } from '../../../extension/alerts/html';
import { parseFromWebview } from '../../../extension/alerts/messages';
import { actionsFor, AlertEvent, AlertLog, describeAlert, notificationSafe, notifyAt, planNotification, unseenStatus, visible } from '../../../extension/alerts/model';
import { initialState, reduce, Sandbox, treeOf } from '../../../extension/tree/model';

let n = 0;
function ev(over: { level?: AlertEvent['record']['level']; action?: string; container?: string; comm?: string; fds?: number[]; ts?: string; title?: string } = {}): AlertEvent {
  const container = over.container ?? 'coi-1a2b3c4d-1';
  return {
    container,
    record: {
      id: `id-${++n}`,
      timestamp: over.ts ?? `2026-11-27T07:44:${String(n % 60).padStart(2, '0')}.000Z`,
      level: over.level ?? 'critical',
      category: 'reverse_shell',
      title: over.title ?? 'Reverse shell: standard streams connected to the network',
      description: 'd',
      evidence: {
        process: { pid: 10, comm: over.comm ?? 'sh', argv: ['sh', '-i'], lineage: [] },
        network: { proto: 'tcp', remote: '10.99.0.2', port: 4444, local: '10.213.0.9:5000', fds: over.fds ?? [0] },
        rule: 'reverse-shell/shell-stdio-network',
        key: 'k',
      },
      action: over.action ?? 'paused',
      container,
    },
  };
}

test('what the notification says: what was seen and what was done', () => {
  assert.equal(describeAlert(ev()), 'froze coi-1a2b3c4d-1: sh with its stdin on a socket to 10.99.0.2:4444');
  assert.equal(describeAlert(ev({ action: 'killed', fds: [0, 1, 2] })), 'killed coi-1a2b3c4d-1: sh with its stdin, stdout and stderr on a socket to 10.99.0.2:4444');
  assert.equal(describeAlert(ev({ action: 'alerted', fds: [] })), 'saw in coi-1a2b3c4d-1: sh — Reverse shell: standard streams connected to the network (10.99.0.2:4444)');
  // A process named like a command link stays text; escapes are shown, not sent.
  assert.equal(notificationSafe('[Kill](command:coi.kill)\x1b[2J'), '[Kill] (command:coi.kill)\\x1b[2J');
  assert.equal(visible('a\u202eb\nc'), 'a\\u202eb\\x0ac');
});

test('a burst is one notification with a count; WARNING is a warning, HIGH and CRITICAL errors; INFO none', () => {
  assert.equal(planNotification([ev({ level: 'info', action: 'logged' })]), undefined);
  const w = planNotification([ev({ level: 'warning', action: 'alerted' })])!;
  assert.equal(w.severity, 'warning');
  assert.equal(w.count, 1);
  const crit = ev({ level: 'critical' });
  const burst = planNotification([ev({ level: 'warning', action: 'alerted' }), crit, ev({ level: 'high' }), ev({ level: 'info', action: 'logged' })])!;
  assert.equal(burst.severity, 'error');
  assert.equal(burst.primary, crit, 'the worst event speaks');
  assert.equal(burst.count, 3);
  assert.match(burst.message, /^COI CRITICAL: froze coi-1a2b3c4d-1: sh with its stdin on a socket to 10\.99\.0\.2:4444 \(\+2 more threats\)$/);
  // Two CRITICALs of one attack: the first is what the guard acted on ("froze"), the next only "kept frozen".
  const pair = planNotification([ev({ level: 'critical', fds: [0, 1, 2] }), ev({ level: 'critical', action: 'logged (already paused)' })])!;
  assert.match(pair.message, /^COI CRITICAL: froze coi-1a2b3c4d-1: sh with its stdin, stdout and stderr on a socket to 10\.99\.0\.2:4444 \(\+1 more threat\)$/);
  const two = planNotification([ev({ level: 'high' }), ev({ level: 'high', container: 'coi-1a2b3c4d-2' })])!;
  assert.match(two.message, /\(\+1 more threats in 2 sandboxes\)$/);
});

test('when a notification shows: after a short gather, a flood at most every cooldown, but never a CRITICAL behind a WARNING', () => {
  assert.equal(notifyAt(1_000, 'warning', undefined, 250, 4_000), 1_250);
  assert.equal(notifyAt(2_000, 'warning', { at: 1_250, level: 'warning' }, 250, 4_000), 5_250, 'folded into the next, after the cooldown');
  assert.equal(notifyAt(9_000, 'high', { at: 1_250, level: 'critical' }, 250, 4_000), 9_250, 'the cooldown is over');
  assert.equal(notifyAt(2_000, 'critical', { at: 1_250, level: 'warning' }, 250, 4_000), 2_250, 'worse than the last: at once');
});

test('the buttons that apply: Resume when frozen, Kill while it exists, Restore Snapshot unless it has none, nothing once killed', () => {
  assert.deepEqual(actionsFor(ev({ action: 'paused' })), ['resume', 'kill', 'restoreSnapshot']);
  assert.deepEqual(actionsFor(ev({ action: 'paused' }), { snapshots: 0 }), ['resume', 'kill']);
  assert.deepEqual(actionsFor(ev({ action: 'alerted' }), { exists: true, state: 'running', snapshots: 2 }), ['kill', 'restoreSnapshot']);
  assert.deepEqual(actionsFor(ev({ action: 'alerted' }), { exists: true, state: 'frozen' }), ['resume', 'kill', 'restoreSnapshot'], 'the tree\'s state wins');
  assert.deepEqual(actionsFor(ev({ action: 'killed' })), []);
  assert.deepEqual(actionsFor(ev({ action: 'paused' }), { exists: false }), []);
});

test('the alert log: one event per id, newest first, unseen per sandbox until seen, capped', () => {
  const log = new AlertLog(3);
  const a = ev({ level: 'critical', ts: '2026-11-27T07:00:01Z' });
  const b = ev({ level: 'warning', action: 'alerted', ts: '2026-11-27T07:00:02Z', container: 'coi-1a2b3c4d-2' });
  const i = ev({ level: 'info', action: 'logged', ts: '2026-11-27T07:00:03Z' });
  assert.equal(log.add([a, b, i], { live: true }).length, 3);
  assert.equal(log.add([{ ...a, auditPath: '/x.jsonl' }], { live: false }).length, 0, 'the log\'s copy of a pushed event is the same event');
  assert.equal(log.get(a.record.id)?.auditPath, '/x.jsonl');
  assert.deepEqual(log.events.map((e) => e.record.id), [i, b, a].map((e) => e.record.id));
  assert.deepEqual(log.unseenBySandbox(), { 'coi-1a2b3c4d-1': { unseen: 1, worst: 'critical' }, 'coi-1a2b3c4d-2': { unseen: 1, worst: 'warning' } });
  assert.equal(unseenStatus(log.unseenBySandbox())?.text, '$(error) 2 COI alerts');
  assert.equal(log.markSeen('coi-1a2b3c4d-1'), true);
  assert.equal(log.unseenTotal(), 1);
  log.add([ev({ ts: '2026-11-27T07:00:04Z' })], { live: false });
  assert.equal(log.events.length, 3, 'capped: the oldest goes');
  assert.equal(log.get(a.record.id), undefined);
  assert.equal(log.markSeen(), true);
  assert.equal(unseenStatus(log.unseenBySandbox()), undefined);
});

test('the tree shows a slot\'s unseen alerts, with its frozen state', () => {
  const sb: Sandbox = { name: 'coi-1a2b3c4d-1', workspace: '/w', slot: 1, kind: 'shell', state: 'frozen', tool: 'shell', persistent: false, session: '', profile: 'default', phase: 'ready', createdAt: '', image: 'coi' };
  let s = initialState([{ name: 'w', path: '/w' }]);
  s = reduce(s, { type: 'info-received', info: { helper: { version: '1', pid: 1, node: 'v20' }, incus: { reachable: true, serverVersion: '6', apiVersion: '1.0', endpoint: 'e' }, guard: { reachable: true, version: '1', pid: 2, socket: 's' } } });
  s = reduce(s, { type: 'sandboxes-listed', sandboxes: [sb] });
  const before = s;
  s = reduce(s, { type: 'alerts-changed', alerts: { [sb.name]: { unseen: 2, worst: 'critical' } } });
  assert.equal(reduce(s, { type: 'alerts-changed', alerts: { [sb.name]: { unseen: 2, worst: 'critical' } } }), s, 'the same counts: no re-render');
  const slot = treeOf(s)[0]!.children![0]!;
  assert.equal(slot.description, 'shell · ephemeral · frozen · 2 unseen alerts');
  assert.match(slot.tooltip ?? '', /Alerts: 2 unseen, worst CRITICAL/);
  assert.equal(slot.icon.id, 'debug-pause');
  assert.equal(treeOf(before)[0]!.children![0]!.description, 'shell · ephemeral · frozen');
});

test('only well-formed messages from the webview are acted on', () => {
  assert.deepEqual(parseFromWebview({ type: 'ready' }), { type: 'ready' });
  assert.deepEqual(parseFromWebview({ type: 'action', action: 'kill', container: 'coi-1-1', id: 'a-1' }), { type: 'action', action: 'kill', container: 'coi-1-1', id: 'a-1' });
  for (const bad of [null, 'kill', { type: 'action', action: 'rm -rf', container: 'coi-1-1', id: 'a' }, { type: 'action', action: 'kill', container: '../etc', id: 'a' }, { type: 'openAudit', container: 'c', id: 'x y' }, { type: 'exec' }]) {
    assert.equal(parseFromWebview(bad), undefined, JSON.stringify(bad));
  }
});

test('the page\'s CSP: nothing by default, the script only by nonce', () => {
  const html = alertsHtml({ cspSource: 'https://x.vscode-cdn.net', scriptUri: 'https://x.vscode-cdn.net/dist/webview.js', codiconsUri: 'https://x.vscode-cdn.net/dist/codicons/codicon.css', nonce: 'abc123' });
  const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)![1]!;
  assert.equal(csp.split(';')[0], `default-src 'none'`);
  assert.match(csp, /script-src 'nonce-abc123'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.deepEqual([...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]), ['<script nonce="abc123" src="https://x.vscode-cdn.net/dist/webview.js">']);
});

test('audit history across sandboxes, newest last, of this prefix only; and where a raw line is', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'coi-alerts-audit-'));
  try {
    const line = (id: string, ts: string, container: string) => JSON.stringify({ id, timestamp: ts, level: 'warning', category: 'c', title: 't', description: 'd', evidence: { rule: 'r', key: 'k' }, action: 'alerted', container });
    writeFileSync(join(dir, 'coi-aaaa-1.jsonl'), `${line('a1', '2026-11-27T07:00:01Z', 'coi-aaaa-1')}\nnot json\n${line('a2', '2026-11-27T07:00:03Z', 'coi-aaaa-1')}\n`);
    writeFileSync(join(dir, 'coi-bbbb-1.jsonl'), `${line('b1', '2026-11-27T07:00:02Z', 'coi-bbbb-1')}\n`);
    writeFileSync(join(dir, 'other-1.jsonl'), `${line('o1', '2026-11-27T07:00:04Z', 'other-1')}\n`);
    const reader = { uid: 4242, env: { COI_AUDIT_DIR: dir } };
    const r = await recentAudit(reader, { limit: 10, prefix: 'coi-' });
    assert.deepEqual(r.events.map((e) => e.record.id), ['a1', 'b1', 'a2']);
    assert.equal(r.skipped, 1);
    assert.equal(r.events[0]!.auditPath, join(dir, 'coi-aaaa-1.jsonl'));
    assert.deepEqual((await recentAudit(reader, { limit: 2, prefix: 'coi-' })).events.map((e) => e.record.id), ['b1', 'a2']);
    assert.deepEqual(await locateAuditLine('coi-aaaa-1', 'a2', reader), { path: join(dir, 'coi-aaaa-1.jsonl'), line: 3 });
    assert.equal(await locateAuditLine('coi-aaaa-1', 'b1', reader), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
