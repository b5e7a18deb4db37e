import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import type { HelperInfoResult } from '../../helper/protocol/methods';
import { describeVersions, initialState, ModelEvent, ModelState, reduce, statusBarOf, TreeNode, treeOf } from '../../extension/tree/model';

const folder = { name: 'proj', path: '/home/u/proj' };

function info(over: { incus?: HelperInfoResult['incus']; guard?: HelperInfoResult['guard'] } = {}): HelperInfoResult {
  return {
    helper: { version: '0.1.0', pid: 42, node: 'v20.20.2' },
    incus: over.incus ?? { reachable: true, serverVersion: '6.0.4', apiVersion: '1.0', endpoint: 'unix:/var/lib/incus/unix.socket' },
    guard: over.guard ?? { reachable: true, version: '0.1.0', pid: 7, socket: '/run/coi/guard.sock' },
  };
}

const run = (events: ModelEvent[], s: ModelState = initialState([folder])) => events.reduce(reduce, s);
const labels = (nodes: TreeNode[]) => nodes.map((n) => n.label);
const contexts = (nodes: TreeNode[]) => nodes.map((n) => n.contextValue);

test('before the helper answers, the view shows one spinning item, never nothing', () => {
  for (const s of [initialState([folder]), run([{ type: 'info-requested' }])]) {
    const nodes = treeOf(s);
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0]!.icon.id, 'loading~spin');
    assert.equal(nodes[0]!.contextValue, 'coi.loading');
  }
});

test('all reachable: the workspace folder, then the Incus and guard status', () => {
  const nodes = treeOf(run([{ type: 'info-requested' }, { type: 'info-received', info: info() }]));
  assert.deepEqual(labels(nodes), ['proj', 'Incus 6.0.4', 'Guard 0.1.0']);
  assert.deepEqual(contexts(nodes), ['coi.workspace', 'coi.status:incus', 'coi.status:guard']);
  assert.equal(nodes[0]!.id, 'workspace:/home/u/proj');
  assert.equal(nodes[0]!.tooltip, '/home/u/proj');
  assert.equal(nodes[1]!.description, 'API 1.0');
  assert.deepEqual(nodes[1]!.icon, { id: 'server-environment', color: 'testing.iconPassed' });
  assert.ok(nodes.every((n) => n.collapsible === 'none'));
});

test('Incus unreachable: an error item with the set-up fix instead of the workspace', () => {
  const nodes = treeOf(
    run([{ type: 'info-received', info: info({ incus: { reachable: false, endpoint: 'unix:/x', error: 'Incus is not running at /x', remedy: 'sudo coi setup' } }) }]),
  );
  assert.deepEqual(labels(nodes), ['Incus is not reachable', 'Guard 0.1.0']);
  const p = nodes[0]!;
  assert.equal(p.contextValue, 'coi.problem:incus;fix=setup');
  assert.match(p.contextValue, /^coi\.problem:.*;fix=setup$/, 'matches the inline menu when clause in package.json');
  assert.deepEqual(p.command, { command: 'coi.setup', title: 'Set Up This Machine' });
  assert.deepEqual(p.icon, { id: 'error', color: 'problemsErrorIcon.foreground' });
  assert.equal(p.description, 'Incus is not running at /x');
  assert.match(p.tooltip!, /Fix: Set Up This Machine \(sudo coi setup\)/);
});

test('guard not running: the workspace still shows, and the guard problem offers set-up', () => {
  const nodes = treeOf(run([{ type: 'info-received', info: info({ guard: { reachable: false, socket: '/run/coi/guard.sock', error: 'the COI guard is not running' } }) }]));
  assert.deepEqual(labels(nodes), ['proj', 'Incus 6.0.4', 'The COI guard is not running']);
  assert.equal(nodes[2]!.contextValue, 'coi.problem:guard;fix=setup');
  assert.equal(nodes[2]!.command?.command, 'coi.setup');
});

test('the helper failing to answer is an item with its remedy, or Show Log without one', () => {
  const withRemedy = treeOf(run([{ type: 'info-failed', message: 'boom', remedy: { title: 'Restart Helper', command: 'coi.restartHelper' } }]));
  assert.deepEqual(contexts(withRemedy), ['coi.problem:helper;fix=restartHelper']);
  const without = treeOf(run([{ type: 'info-failed', message: 'boom' }]));
  assert.deepEqual(contexts(without), ['coi.problem:helper;fix=showLog']);
  assert.equal(without[0]!.label, 'Cannot talk to the COI helper');
});

test('a helper that gave up after crashes says so until it starts again', () => {
  let s = run([{ type: 'info-received', info: info() }, { type: 'helper-gave-up', reason: 'the COI helper crashed 6 times in 3 minutes' }]);
  let nodes = treeOf(s);
  assert.deepEqual(contexts(nodes), ['coi.problem:helper;fix=restartHelper']);
  assert.equal(nodes[0]!.label, 'The COI helper keeps crashing');
  assert.equal(statusBarOf(s).background, 'statusBarItem.errorBackground');
  s = reduce(s, { type: 'helper-started' });
  nodes = treeOf(s);
  assert.deepEqual(labels(nodes), ['proj', 'Incus 6.0.4', 'Guard 0.1.0']);
});

test('a refresh keeps the previous answer on screen while it loads', () => {
  const s = run([{ type: 'info-received', info: info() }, { type: 'info-requested' }]);
  assert.equal(s.info.kind, 'loading');
  assert.deepEqual(labels(treeOf(s)), ['proj', 'Incus 6.0.4', 'Guard 0.1.0']);
});

test('workspace folders follow the editor: none gives an Open Folder item, several give one root each', () => {
  const none = treeOf(run([{ type: 'folders-changed', folders: [] }, { type: 'info-received', info: info() }]));
  assert.equal(none[0]!.contextValue, 'coi.noFolder');
  assert.equal(none[0]!.command?.command, 'workbench.action.files.openFolder');
  const two = treeOf(run([{ type: 'folders-changed', folders: [folder, { name: 'b', path: '/b' }] }, { type: 'info-received', info: info() }]));
  assert.deepEqual(labels(two).slice(0, 2), ['proj', 'b']);
});

test('every state gives a non-empty tree', () => {
  const states: ModelState[] = [
    initialState([]),
    run([{ type: 'info-requested' }], initialState([])),
    run([{ type: 'info-failed', message: 'x' }], initialState([])),
    run([{ type: 'info-received', info: info({ incus: { reachable: false, endpoint: 'e', error: 'x' }, guard: { reachable: false, socket: 's', error: 'y' } }) }], initialState([])),
    run([{ type: 'helper-gave-up', reason: 'r' }], initialState([])),
  ];
  for (const s of states) assert.ok(treeOf(s).length > 0, JSON.stringify(s));
});

test('status bar: plain when all is well, warning when something is unreachable, error when the helper is down', () => {
  assert.deepEqual(statusBarOf(initialState()), { text: '$(vm) COI', tooltip: 'COI: open the Sandboxes view' });
  const good = statusBarOf(run([{ type: 'info-received', info: info() }]));
  assert.equal(good.text, '$(vm) COI');
  assert.equal(good.background, undefined);
  const warn = statusBarOf(run([{ type: 'info-received', info: info({ guard: { reachable: false, socket: 's', error: 'y' } }) }]));
  assert.equal(warn.background, 'statusBarItem.warningBackground');
  assert.match(warn.tooltip, /guard is not running/);
  assert.equal(statusBarOf(run([{ type: 'info-failed', message: 'x' }])).background, 'statusBarItem.errorBackground');
});

test('the versions message names all three parts, reachable or not', () => {
  assert.equal(describeVersions(info()), 'COI helper 0.1.0 (Node v20.20.2) · Incus 6.0.4 (API 1.0) · guard 0.1.0');
  assert.equal(
    describeVersions(info({ incus: { reachable: false, endpoint: 'e', error: 'no socket' }, guard: { reachable: false, socket: 's', error: 'not running' } })),
    'COI helper 0.1.0 (Node v20.20.2) · Incus not reachable (no socket) · guard not running (not running)',
  );
});
