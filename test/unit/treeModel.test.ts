import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import type { HelperInfoResult } from '../../helper/protocol/methods';
import { currentSandboxes, describeVersions, findNode, initialState, ModelEvent, ModelState, reduce, Sandbox, sandboxContext, statusBarOf, TreeNode, treeOf } from '../../extension/tree/model';

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

// ── sandboxes and snapshots ─────────────────────────────────────────────────

function sb(over: Partial<Sandbox> & { name: string }): Sandbox {
  return {
    workspace: '/home/u/proj',
    slot: 1,
    kind: 'shell',
    state: 'running',
    tool: 'shell',
    persistent: false,
    session: 'a1b2',
    profile: 'default',
    phase: 'ready',
    address: '10.20.0.5',
    createdAt: '2025-01-02T03:04:05Z',
    image: 'coi-base',
    ...over,
  };
}
const ready = (...sandboxes: Sandbox[]): ModelEvent[] => [
  { type: 'info-received', info: info() },
  { type: 'sandboxes-listed', sandboxes },
];
const ws = (s: ModelState) => treeOf(s)[0]!;

test('sandboxes: the workspace lists its slots by slot number, with state icon, description, tooltip and contextValue', () => {
  const s = run(ready(sb({ name: 'coi-x-2', slot: 2, state: 'stopped', persistent: true, tool: 'claude' }), sb({ name: 'coi-x-1' })));
  const root = ws(s);
  assert.equal(root.collapsible, 'expanded');
  assert.equal(root.description, '1 running, 1 stopped');
  const slots = root.children!;
  assert.deepEqual(labels(slots), ['slot 1', 'slot 2']);
  assert.deepEqual(
    slots.map((n) => [n.id, n.description, n.icon, n.contextValue, n.collapsible]),
    [
      ['sandbox:coi-x-1', 'shell · ephemeral', { id: 'vm-running', color: 'testing.iconPassed' }, 'coi.sandbox;state=running;persistent=false;kind=shell', 'collapsed'],
      ['sandbox:coi-x-2', 'claude · persistent · stopped', { id: 'vm-outline', color: 'disabledForeground' }, 'coi.sandbox;state=stopped;persistent=true;kind=shell', 'collapsed'],
    ],
  );
  const tip = slots[0]!.tooltip!;
  for (const want of ['coi-x-1 — running', 'Address: 10.20.0.5', 'Image: coi-base', 'Session: a1b2', 'Ephemeral']) assert.ok(tip.includes(want), `${want} in ${tip}`);
  assert.deepEqual(slots[0]!.target, { kind: 'sandbox', name: 'coi-x-1', sandbox: s.sandboxes.byName['coi-x-1'] });
});

test('sandboxes: frozen and starting slots have their own icons; a slot still being created says so', () => {
  const s = run(ready(sb({ name: 'a', slot: 1, state: 'frozen' }), sb({ name: 'b', slot: 2, state: 'starting', phase: 'creating' })));
  const [a, b] = ws(s).children!;
  assert.deepEqual(a!.icon, { id: 'debug-pause', color: 'problemsWarningIcon.foreground' });
  assert.equal(a!.description, 'shell · ephemeral · frozen');
  assert.equal(b!.icon.id, 'loading~spin');
  assert.equal(b!.description, 'shell · ephemeral · creating…');
  assert.equal(ws(s).description, '1 frozen, 1 starting');
});

test('live: $/sandbox/changed adds, updates and removes slots without a new list', () => {
  let s = run(ready());
  assert.equal(ws(s).description, 'no sandbox yet');
  assert.equal(ws(s).collapsible, 'none');
  s = reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-created', sandbox: sb({ name: 'a', state: 'stopped', phase: 'creating' }) });
  s = reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-started', sandbox: sb({ name: 'a' }) });
  assert.deepEqual(contexts(ws(s).children!), ['coi.sandbox;state=running;persistent=false;kind=shell']);
  // A new id, so VS Code shows the folder expanded rather than keeping the leaf it knew.
  assert.equal(ws(s).id, 'workspace:/home/u/proj#slots');
  assert.equal(ws(s).collapsible, 'expanded');
  s = reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-paused', sandbox: sb({ name: 'a', state: 'frozen' }) });
  assert.equal(ws(s).children![0]!.contextValue, 'coi.sandbox;state=frozen;persistent=false;kind=shell');
  s = reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-deleted', sandbox: null });
  assert.equal(ws(s).children, undefined);
  assert.equal(ws(s).description, 'no sandbox yet');
  assert.equal(ws(s).id, 'workspace:/home/u/proj');
});

test('an event that changes nothing shown (an exec, a log read) leaves the state as it is', () => {
  const s = run(ready(sb({ name: 'a' })));
  assert.equal(reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-exec', sandbox: sb({ name: 'a' }) }), s);
  assert.equal(reduce(s, { type: 'sandbox-changed', name: 'gone', action: 'instance-deleted', sandbox: null }), s);
  assert.notEqual(reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-updated', sandbox: sb({ name: 'a', persistent: true }) }), s);
});

test('while the first list loads the workspace says so; a failed list is a problem item with its fix', () => {
  const loading = run([{ type: 'info-received', info: info() }, { type: 'sandboxes-requested' }]);
  assert.equal(ws(loading).description, 'looking for sandboxes…');
  const failed = run([{ type: 'info-received', info: info() }, { type: 'sandboxes-failed', message: 'permission denied on the Incus socket', remedy: { title: 'Set Up This Machine', command: 'coi.setup' } }]);
  const nodes = treeOf(failed);
  assert.deepEqual(labels(nodes), ['proj', 'Cannot list the sandboxes', 'Incus 6.0.4', 'Guard 0.1.0']);
  assert.equal(nodes[1]!.contextValue, 'coi.problem:sandboxes;fix=setup');
  assert.equal(ws(failed).description, 'sandboxes unknown');
});

test('sandboxes of workspaces not open here are listed after the open folders, collapsed', () => {
  const s = run(ready(sb({ name: 'o', workspace: '/srv/other' }), sb({ name: 'p' })));
  const nodes = treeOf(s);
  assert.deepEqual(labels(nodes), ['proj', 'other', 'Incus 6.0.4', 'Guard 0.1.0']);
  assert.equal(nodes[1]!.contextValue, 'coi.workspace.other');
  assert.equal(nodes[1]!.collapsible, 'collapsed');
  assert.equal(nodes[1]!.description, '1 running · not open here');
  assert.deepEqual(nodes[1]!.target, { kind: 'workspace', path: '/srv/other', name: 'other', open: false });
});

test('a folder opened through a symlink matches sandboxes by its real path', () => {
  const s = run(ready(sb({ name: 'a', workspace: '/data/proj' })), initialState([{ name: 'proj', path: '/home/u/proj', real: '/data/proj' }]));
  assert.deepEqual(labels(ws(s).children!), ['slot 1']);
  assert.deepEqual(currentSandboxes(s).map((x) => x.name), ['a']);
});

test('snapshots: loading, none, listed newest first, failed; created and deleted ones show at once', () => {
  let s = run(ready(sb({ name: 'a' })));
  const slot = () => ws(s).children![0]!;
  assert.deepEqual(contexts(slot().children!), ['coi.snapshots.loading'], 'unknown until the slot is expanded');
  s = reduce(s, { type: 'snapshots-requested', name: 'a' });
  s = reduce(s, { type: 'snapshots-listed', name: 'a', snapshots: [] });
  assert.deepEqual(labels(slot().children!), ['No snapshots']);
  assert.equal(slot().children![0]!.contextValue, 'coi.snapshots.none');
  s = reduce(s, { type: 'snapshots-listed', name: 'a', snapshots: [{ name: 'old', createdAt: '2025-01-01T00:00:00Z', stateful: false }, { name: 'new', createdAt: '2025-01-03T00:00:00Z', stateful: true }] });
  assert.deepEqual(labels(slot().children!), ['new', 'old']);
  const snap = slot().children![0]!;
  assert.equal(snap.id, 'snapshot:a/new');
  assert.equal(snap.contextValue, 'coi.snapshot;sandbox=running');
  assert.match(snap.description!, /^\d{4}-\d\d-\d\d \d\d:\d\d · stateful$/);
  assert.deepEqual(snap.target, { kind: 'snapshot', sandbox: 'a', snapshot: 'new' });
  // A re-list keeps showing the known ones meanwhile.
  s = reduce(s, { type: 'snapshots-requested', name: 'a' });
  assert.deepEqual(labels(slot().children!), ['new', 'old']);
  s = reduce(s, { type: 'snapshots-listed', name: 'a', snapshots: [{ name: 'old', createdAt: '2025-01-01T00:00:00Z', stateful: false }] });
  s = reduce(s, { type: 'snapshot-created', name: 'a', snapshot: { name: 'mine', createdAt: '2025-02-01T00:00:00Z', stateful: false } });
  assert.deepEqual(labels(slot().children!), ['mine', 'old']);
  s = reduce(s, { type: 'snapshot-deleted', name: 'a', snapshot: 'old' });
  assert.deepEqual(labels(slot().children!), ['mine']);
  s = reduce(s, { type: 'snapshots-failed', name: 'a', message: 'no such instance' });
  assert.equal(slot().children![0]!.label, 'Cannot list the snapshots');
  assert.match(slot().children![0]!.contextValue, /^coi\.problem:.*;fix=showLog$/);
});

test('snapshots of a sandbox that went away are forgotten; a late list for it is ignored', () => {
  let s = run([...ready(sb({ name: 'a' })), { type: 'snapshots-listed', name: 'a', snapshots: [] }]);
  s = reduce(s, { type: 'sandbox-changed', name: 'a', action: 'instance-deleted', sandbox: null });
  assert.deepEqual(s.snapshots, {});
  s = reduce(s, { type: 'snapshots-listed', name: 'a', snapshots: [] });
  assert.deepEqual(s.snapshots, {});
  s = run([...ready(sb({ name: 'a' })), { type: 'snapshots-listed', name: 'a', snapshots: [] }, { type: 'sandboxes-listed', sandboxes: [] }]);
  assert.deepEqual(s.snapshots, {});
});

test('contextValue encodes state, persistence and kind for the menus; findNode finds by id', () => {
  assert.equal(sandboxContext({ state: 'frozen', persistent: true, kind: 'run' }), 'coi.sandbox;state=frozen;persistent=true;kind=run');
  const s = run(ready(sb({ name: 'a' })));
  assert.equal(findNode(treeOf(s), 'sandbox:a')?.label, 'slot 1');
  assert.equal(findNode(treeOf(s), 'sandbox:zzz'), undefined);
});

test('status bar: the current workspace\'s sandbox state, "COI: running (slot 1)"', () => {
  assert.equal(statusBarOf(run(ready())).text, '$(vm) COI');
  const one = statusBarOf(run(ready(sb({ name: 'a' }))));
  assert.equal(one.text, '$(vm-running) COI: running (slot 1)');
  assert.equal(one.background, undefined);
  assert.match(one.tooltip, /slot 1: running, shell, ephemeral \(a\)/);
  const mixed = statusBarOf(run(ready(sb({ name: 'a' }), sb({ name: 'b', slot: 2, state: 'frozen' }), sb({ name: 'c', slot: 3 }), sb({ name: 'o', workspace: '/elsewhere' }))));
  assert.equal(mixed.text, '$(warning) COI: frozen (slot 2), running (slots 1, 3)');
  assert.equal(mixed.background, 'statusBarItem.warningBackground');
  assert.equal(statusBarOf(run(ready(sb({ name: 'a', state: 'stopped', persistent: true })))).text, '$(vm-outline) COI: stopped (slot 1)');
  // The guard being down does not hide the sandbox's state; it adds a warning.
  const noGuard = statusBarOf(
    run([{ type: 'info-received', info: info({ guard: { reachable: false, socket: 's', error: 'y' } }) }, { type: 'sandboxes-listed', sandboxes: [sb({ name: 'a' })] }]),
  );
  assert.equal(noGuard.text, '$(warning) COI: running (slot 1)');
  assert.equal(noGuard.background, 'statusBarItem.warningBackground');
  assert.match(noGuard.tooltip, /Warning: the guard is not running/);
});
