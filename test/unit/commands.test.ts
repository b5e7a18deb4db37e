// The argument handling of every COI command: from a tree node or a quick-pick
// choice to the request and params it sends (extension/commands/args.ts), and
// the manifest's menus agreeing with which slots each command applies to.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  attachedSandbox,
  attachTerminalSpec,
  choicesKey,
  confirmation,
  describeChoices,
  helperCommandLine,
  openParams,
  persistentPick,
  profilePick,
  profileTarget,
  readChoices,
  runCommandLine,
  SANDBOX_COMMANDS,
  sandboxCall,
  SandboxCommand,
  sandboxNameOf,
  sandboxPickItems,
  slotPick,
  snapshotCall,
  snapshotCreateCall,
  snapshotOf,
  snapshotPickItems,
  targetOf,
  terminalName,
  terminalsToRestore,
  toolPick,
  validateSnapshotName,
  workspaceOf,
} from '../../extension/commands/args';
import { findNode, initialState, ModelEvent, reduce, Sandbox, sandboxContext, treeOf } from '../../extension/tree/model';
import type { HelperInfoResult, SandboxOptionsResult } from '../../helper/protocol/methods';

const folder = { name: 'proj', path: '/home/u/proj' };
const bin = { execPath: '/opt/code/node', helperJs: '/ext/dist/helper.js' };

function sb(over: Partial<Sandbox> & { name: string }): Sandbox {
  return {
    workspace: '/home/u/proj',
    slot: 1,
    kind: 'shell',
    state: 'running',
    tool: 'shell',
    persistent: false,
    session: 's',
    profile: 'default',
    phase: 'ready',
    createdAt: '2025-01-02T03:04:05Z',
    image: 'coi-base',
    ...over,
  };
}

const info: HelperInfoResult = {
  helper: { version: '0.1.0', pid: 1, node: 'v20' },
  incus: { reachable: true, serverVersion: '6', apiVersion: '1.0', endpoint: 'e' },
  guard: { reachable: true, version: '0.1.0', pid: 2, socket: 's' },
};

/** The tree the user clicks in, from the real model. */
function nodes(sandboxes: Sandbox[], snapshots: Record<string, { name: string; createdAt: string; stateful: boolean }[]> = {}) {
  const events: ModelEvent[] = [{ type: 'info-received', info }, { type: 'sandboxes-listed', sandboxes }];
  for (const [name, list] of Object.entries(snapshots)) events.push({ type: 'snapshots-listed', name, snapshots: list });
  return treeOf(events.reduce(reduce, initialState([folder])));
}

test('targets: a slot node names its sandbox, a snapshot node its snapshot, the Palette nothing', () => {
  const tree = nodes([sb({ name: 'coi-ab-1' })], { 'coi-ab-1': [{ name: 's1', createdAt: '2025-01-01T00:00:00Z', stateful: false }] });
  const slot = findNode(tree, 'sandbox:coi-ab-1');
  const snap = findNode(tree, 'snapshot:coi-ab-1/s1');
  assert.equal(sandboxNameOf(slot), 'coi-ab-1');
  assert.deepEqual(snapshotOf(snap), { sandbox: 'coi-ab-1', snapshot: 's1' });
  assert.equal(sandboxNameOf(snap), undefined, 'a snapshot node is no slot');
  assert.equal(snapshotOf(slot), undefined);
  // From the Palette: no argument (or VS Code's odd ones) → the quick pick.
  for (const none of [undefined, null, {}, 42, '', { target: { kind: 'bogus' } }]) assert.equal(targetOf(none), undefined, JSON.stringify(none));
  // Another command may pass a plain name.
  assert.equal(sandboxNameOf('coi-ab-2'), 'coi-ab-2');
});

test('workspace commands: the node\'s folder, else the only open folder, else a pick (several) or Open Folder (none)', () => {
  const ws = findNode(nodes([]), 'workspace:/home/u/proj');
  assert.deepEqual(workspaceOf(ws, [folder, { name: 'b', path: '/b' }]), { folder, mustPick: false });
  assert.deepEqual(workspaceOf(undefined, [folder]), { folder, mustPick: false });
  assert.deepEqual(workspaceOf(undefined, [folder, { name: 'b', path: '/b' }]), { mustPick: true });
  assert.deepEqual(workspaceOf(undefined, []), { mustPick: false });
});

test('lifecycle commands send sandbox/<verb> {name}', () => {
  for (const [cmd, method] of [
    ['coi.shutdown', 'sandbox/shutdown'],
    ['coi.kill', 'sandbox/kill'],
    ['coi.persist', 'sandbox/persist'],
    ['coi.resume', 'sandbox/resume'],
  ] as const) {
    const c = sandboxCall(cmd, 'coi-ab-1');
    assert.equal(c.def.method, method);
    assert.deepEqual(c.params, { name: 'coi-ab-1' });
    assert.ok(c.def.params.safeParse(c.params).success, `${method} params validate`);
  }
});

test('snapshot commands: create with or without a name, restore/delete/branch {name, snapshot}', () => {
  const named = snapshotCreateCall('coi-ab-1', '  before-refactor ');
  assert.equal(named.def.method, 'snapshot/create');
  assert.deepEqual(named.params, { name: 'coi-ab-1', snapshot: 'before-refactor' });
  assert.deepEqual(snapshotCreateCall('coi-ab-1', '').params, { name: 'coi-ab-1' }, 'empty: the helper names it');
  assert.deepEqual(snapshotCreateCall('coi-ab-1', undefined).params, { name: 'coi-ab-1' });
  for (const [cmd, method] of [
    ['coi.snapshot.restore', 'snapshot/restore'],
    ['coi.snapshot.delete', 'snapshot/delete'],
    ['coi.snapshot.branch', 'snapshot/branch'],
  ] as const) {
    const c = snapshotCall(cmd, { sandbox: 'coi-ab-1', snapshot: 's1' });
    assert.equal(c.def.method, method);
    assert.deepEqual(c.params, { name: 'coi-ab-1', snapshot: 's1' });
    assert.ok(c.def.params.safeParse(c.params).success);
  }
  assert.equal(validateSnapshotName(''), undefined);
  assert.equal(validateSnapshotName('snap-1.ok_2'), undefined);
  for (const bad of ['a/b', 'has space', '-lead', 'x'.repeat(64), 'ü']) assert.ok(validateSnapshotName(bad), bad);
});

test('destructive commands ask first; the others do not', () => {
  const q = confirmation('coi.kill', { name: 'coi-ab-1', slot: 1 });
  assert.deepEqual(q && [q.message, q.button], ['Kill slot 1 (coi-ab-1)?', 'Kill']);
  assert.match(confirmation('coi.snapshot.restore', { name: 'n' }, 's1')!.message, /^Restore n to snapshot s1\?$/);
  assert.equal(confirmation('coi.snapshot.delete', { name: 'n' }, 's1')!.button, 'Delete');
  for (const c of ['coi.shutdown', 'coi.persist', 'coi.resume', 'coi.attach', 'coi.snapshot.create', 'coi.snapshot.branch'] as const) assert.equal(confirmation(c, { name: 'n' }), undefined, c);
});

test('without a node, each command offers only the slots it applies to, this window\'s first', () => {
  const all = [
    sb({ name: 'o-1', workspace: '/srv/other', slot: 1 }),
    sb({ name: 'p-2', slot: 2, state: 'frozen' }),
    sb({ name: 'p-1', slot: 1 }),
    sb({ name: 'p-3', slot: 3, state: 'stopped', persistent: true }),
  ];
  const names = (cmd: SandboxCommand) => sandboxPickItems(all, cmd, [folder]).map((i) => i.value);
  assert.deepEqual(names('coi.attach'), ['p-1', 'o-1']);
  assert.deepEqual(names('coi.resume'), ['p-2']);
  assert.deepEqual(names('coi.kill'), ['p-1', 'p-2', 'p-3', 'o-1']);
  assert.deepEqual(names('coi.shutdown'), ['p-1', 'p-2', 'o-1'], 'a stopped persistent slot is already shut down');
  assert.deepEqual(names('coi.persist'), ['p-1', 'p-2', 'o-1']);
  const [first] = sandboxPickItems(all, 'coi.kill', [folder]);
  assert.deepEqual(first, { label: 'proj · slot 1', description: 'running · shell · ephemeral', detail: 'p-1', value: 'p-1' });
  assert.equal(sandboxPickItems(all, 'coi.kill', [folder])[3]!.label, 'other · slot 1');
  assert.deepEqual(
    snapshotPickItems([{ name: 'a', createdAt: '2025-01-01T00:00:00Z', stateful: false }, { name: 'b', createdAt: '2025-02-01T00:00:00Z', stateful: true }]).map((i) => [i.value, i.description]),
    [['b', '2025-02-01T00:00:00Z · stateful'], ['a', '2025-01-01T00:00:00Z']],
  );
});

// ── the manifest agrees with SANDBOX_COMMANDS ───────────────────────────────

interface MenuItem {
  command: string;
  when?: string;
  group?: string;
}
const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as { contributes: { menus: Record<string, MenuItem[]>; commands: { command: string }[] } };
const contextMenu = manifest.contributes.menus['view/item/context']!;

/** Evaluates the `viewItem =~ /…/` part of a when clause for one contextValue. */
function menuShows(item: MenuItem, contextValue: string): boolean {
  const when = item.when ?? '';
  const eq = /viewItem == ([\w.:;=-]+)/.exec(when);
  if (eq) return eq[1] === contextValue;
  const re = /viewItem =~ \/(.*)\/([a-z]*)/.exec(when);
  assert.ok(re, `when clause without viewItem: ${when}`);
  return new RegExp(re[1]!, re[2]).test(contextValue);
}

test('the tree\'s context menu offers each slot command exactly on the slots it applies to', () => {
  const states = ['running', 'frozen', 'stopped', 'starting', 'stopping', 'error'] as const;
  for (const cmd of Object.keys(SANDBOX_COMMANDS) as SandboxCommand[]) {
    const entries = contextMenu.filter((m) => m.command === cmd && !m.group?.startsWith('inline'));
    assert.equal(entries.length, 1, `${cmd} is in the slot context menu once`);
    for (const state of states) {
      for (const persistent of [false, true]) {
        for (const kind of ['shell', 'run'] as const) {
          const slot = { state, persistent, kind };
          assert.equal(menuShows(entries[0]!, sandboxContext(slot)), SANDBOX_COMMANDS[cmd].appliesTo(slot), `${cmd} on ${sandboxContext(slot)}`);
        }
      }
    }
    // Never on a snapshot, a workspace or a problem.
    for (const other of ['coi.snapshot;sandbox=running', 'coi.workspace', 'coi.problem:incus;fix=setup']) assert.equal(menuShows(entries[0]!, other), false, `${cmd} on ${other}`);
  }
  for (const cmd of ['coi.snapshot.restore', 'coi.snapshot.delete', 'coi.snapshot.branch']) {
    const entries = contextMenu.filter((m) => m.command === cmd && !m.group?.startsWith('inline'));
    assert.equal(entries.length, 1, cmd);
    assert.ok(menuShows(entries[0]!, 'coi.snapshot;sandbox=stopped'));
    assert.ok(!menuShows(entries[0]!, 'coi.sandbox;state=running;persistent=false;kind=shell'));
    assert.ok(!menuShows(entries[0]!, 'coi.snapshots.none'));
  }
  for (const cmd of ['coi.openWorkspace', 'coi.runCommand']) {
    const entries = contextMenu.filter((m) => m.command === cmd && !m.group?.startsWith('inline'));
    assert.ok(entries.some((e) => menuShows(e, 'coi.workspace')), `${cmd} on the workspace`);
  }
});

test('every command stays in the Command Palette (with no node it asks with a quick pick)', () => {
  for (const item of manifest.contributes.menus.commandPalette ?? []) assert.notEqual(item.when, 'false', `${item.command} hidden from the Palette`);
  const ids = manifest.contributes.commands.map((c) => c.command);
  for (const id of [...Object.keys(SANDBOX_COMMANDS), 'coi.openWorkspace', 'coi.runCommand', 'coi.snapshot.restore', 'coi.snapshot.delete', 'coi.snapshot.branch', 'coi.build', 'coi.health', 'coi.setup']) {
    assert.ok(ids.includes(id), `${id} is contributed`);
  }
});

// ── Open Workspace in COI Sandbox ───────────────────────────────────────────

const options: SandboxOptionsResult = {
  tools: [
    { name: 'claude', description: 'Claude Code' },
    { name: 'shell', description: 'a bash shell' },
  ],
  profiles: [
    { name: 'default', scope: 'builtin' },
    { name: 'strict', scope: 'project', description: 'no network' },
  ],
  defaults: { tool: 'claude', persistent: false, profile: 'default' },
};

test('open: the four picks, with the remembered choice active, else the setting, else "as configured"', () => {
  const fresh = toolPick(options, {}, '');
  assert.deepEqual(fresh.items.map((i) => i.label), ['As configured: claude', 'claude', 'shell']);
  assert.equal(fresh.items[fresh.active]!.value, undefined);
  const bySetting = toolPick(options, {}, 'shell');
  assert.equal(bySetting.items[bySetting.active]!.value, 'shell');
  const remembered = toolPick(options, { tool: 'claude' }, 'shell');
  assert.equal(remembered.items[remembered.active]!.value, 'claude', 'the workspace\'s choice wins over the setting');
  assert.equal(toolPick(options, { tool: 'gone' }, '').active, 0, 'an unknown remembered tool falls back');

  const slots = slotPick([sb({ name: 'a', slot: 1 }), sb({ name: 'b', slot: 2, state: 'stopped', persistent: true })], { slot: 2 });
  assert.equal(slots.items.length, 11);
  assert.deepEqual(slots.items.slice(0, 4).map((i) => [i.label, i.description]), [
    ['Auto', 'the first free slot (or a stopped persistent one)'],
    ['Slot 1', 'running: taken, the next free slot is used'],
    ['Slot 2', 'stopped, persistent: restarted'],
    ['Slot 3', 'free'],
  ]);
  assert.equal(slots.items[slots.active]!.value, 2);

  const profiles = profilePick(options, { profile: 'strict' });
  assert.deepEqual(profiles.items.map((i) => [i.label, i.description, i.value]), [
    ['As configured: default', 'no --profile', undefined],
    ['default', 'built-in', 'default'],
    ['strict', 'project', 'strict'],
  ]);
  assert.equal(profiles.items[profiles.active]!.value, 'strict');

  const persistence = persistentPick(options, { persistent: true });
  assert.deepEqual(persistence.items.map((i) => i.value), [undefined, false, true]);
  assert.equal(persistence.items[0]!.label, 'As configured: ephemeral');
  assert.equal(persistence.items[persistence.active]!.value, true);
});

test('open: the choices become sandbox/open params; "as configured" and "auto" send nothing', () => {
  assert.deepEqual(openParams('/home/u/proj', {}), { workspace: '/home/u/proj' });
  assert.deepEqual(openParams('/home/u/proj', { tool: 'shell', slot: 3, profile: 'strict', persistent: false }), { workspace: '/home/u/proj', tool: 'shell', slot: 3, profile: 'strict', persistent: false });
  assert.equal(describeChoices({ tool: 'shell', persistent: false }), 'shell, slot auto, ephemeral');
  assert.equal(describeChoices({}), 'configured tool, slot auto, configured persistence');
});

test('open: remembered choices are per workspace and validated when read back', () => {
  assert.equal(choicesKey('/home/u/proj'), 'coi.openChoices:/home/u/proj');
  assert.deepEqual(readChoices({ tool: 'shell', slot: 2, profile: 'strict', persistent: true }), { tool: 'shell', slot: 2, profile: 'strict', persistent: true });
  assert.deepEqual(readChoices({ tool: 3, slot: 11, profile: '', persistent: 'yes', extra: 1 }), {});
  assert.deepEqual(readChoices(undefined), {});
  assert.deepEqual(readChoices('garbage'), {});
});

// ── terminals ───────────────────────────────────────────────────────────────

test('the agent terminal runs the bundled helper\'s attach with the editor\'s Node, named after folder and slot', () => {
  const spec = attachTerminalSpec(bin, sb({ name: 'coi-ab-2', slot: 2 }), [folder]);
  assert.deepEqual(spec, { name: 'proj · slot 2', shellPath: '/opt/code/node', shellArgs: ['/ext/dist/helper.js', 'attach', 'coi-ab-2'], env: { ELECTRON_RUN_AS_NODE: '1' } });
  assert.equal(terminalName(sb({ name: 'x', workspace: '/srv/other', slot: 1 }), [folder]), 'other · slot 1', 'a workspace not open here: its base name');
  assert.equal(terminalName(sb({ name: 'x', workspace: '/data/proj' }), [{ name: 'proj-link', path: '/home/u/link', real: '/data/proj' }]), 'proj-link · slot 1');
});

test('after a reload, terminals are restored for this window\'s running shell slots that have none', () => {
  const all = [
    sb({ name: 'a', slot: 1 }),
    sb({ name: 'b', slot: 2 }),
    sb({ name: 'c', slot: 3, state: 'stopped' }),
    sb({ name: 'd', slot: 4, kind: 'run' }),
    sb({ name: 'e', slot: 5, phase: 'creating' }),
    sb({ name: 'o', workspace: '/srv/other' }),
  ];
  assert.deepEqual(terminalsToRestore(all, [folder], ['b']).map((s) => s.name), ['a']);
  assert.deepEqual(terminalsToRestore(all, [], []), []);
});

test('an agent terminal is known by what it runs, whoever opened it', () => {
  const spec = attachTerminalSpec(bin, sb({ name: 'coi-ab-1' }), [folder]);
  assert.equal(attachedSandbox(bin, spec), 'coi-ab-1');
  assert.equal(attachedSandbox(bin, { shellPath: '/bin/bash' }), undefined);
  assert.equal(attachedSandbox(bin, {}), undefined);
  assert.equal(attachedSandbox(bin, { shellPath: bin.execPath, shellArgs: [bin.helperJs, 'shell', 'x'] }), undefined);
  assert.equal(attachedSandbox(bin, { shellPath: bin.execPath, shellArgs: `${bin.helperJs} attach x` }), undefined);
  assert.equal(attachedSandbox({ ...bin, helperJs: '/other/dist/helper.js' }, spec), undefined, 'another installation\'s helper is not ours');
});

test('the "COI Sandbox" profile attaches to the lowest running shell slot of the first folder', () => {
  const all = [sb({ name: 'b', slot: 2 }), sb({ name: 'a', slot: 1, state: 'stopped' }), sb({ name: 'c', slot: 3 }), sb({ name: 'o', workspace: '/srv/other' })];
  assert.equal(profileTarget(all, [folder])?.name, 'b');
  assert.equal(profileTarget([], [folder]), undefined);
  assert.equal(profileTarget(all, []), undefined);
});

test('Run Command, Build and Health run the bundled helper in a shell terminal, quoted', () => {
  assert.equal(
    runCommandLine(bin, '/home/u/my proj', "npm test && echo 'ok'"),
    `env ELECTRON_RUN_AS_NODE=1 /opt/code/node /ext/dist/helper.js run --workspace '/home/u/my proj' -- sh -c -- 'npm test && echo '\\''ok'\\'''`,
  );
  assert.equal(runCommandLine(bin, '/w', '-rf'), 'env ELECTRON_RUN_AS_NODE=1 /opt/code/node /ext/dist/helper.js run --workspace /w -- sh -c -- -rf', 'a leading dash is the command, not a flag');
  assert.equal(helperCommandLine(bin, ['build']), 'env ELECTRON_RUN_AS_NODE=1 /opt/code/node /ext/dist/helper.js build');
  assert.equal(helperCommandLine(bin, ['health']), 'env ELECTRON_RUN_AS_NODE=1 /opt/code/node /ext/dist/helper.js health');
});
