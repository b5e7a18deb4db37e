import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { CoiError } from '../../../helper/errors';
import type { SandboxInfo } from '../../../helper/sandbox/labels';
import { autoSnapshotName, autoToPrune, defaultSnapshotName, uniqueName, validateSnapshotName } from '../../../helper/snapshot/names';
import { describePlan, restorePlan } from '../../../helper/snapshot/plan';
import { resolveContainer } from '../../../helper/snapshot/resolve';

const sb = (over: Partial<SandboxInfo> = {}): SandboxInfo => ({
  name: 'coi-1a2b3c4d-1',
  workspace: '/home/u/app',
  slot: 1,
  kind: 'shell',
  state: 'running',
  tool: 'claude',
  persistent: false,
  session: 's',
  profile: 'default',
  phase: 'ready',
  createdAt: '2026-01-01T00:00:00Z',
  image: 'coi-base',
  ...over,
});

describe('snapshot names', () => {
  test('default and automatic names carry the local date and time like the Go coi', () => {
    const d = new Date(2026, 0, 2, 3, 4, 5);
    assert.equal(defaultSnapshotName(d), 'snap-20260102-030405');
    assert.equal(autoSnapshotName(d), 'auto-20260102-030405');
  });

  test('a name taken within the same second gets -2, -3…', () => {
    assert.equal(uniqueName('snap-x', new Set()), 'snap-x');
    assert.equal(uniqueName('snap-x', new Set(['snap-x', 'snap-x-2'])), 'snap-x-3');
  });

  test('names Incus would refuse, and the reserved auto- prefix, are refused with the rule', () => {
    assert.equal(validateSnapshotName('before-refactor.1'), 'before-refactor.1');
    for (const bad of ['', 'a/b', '-x', 'has space', 'x'.repeat(64)]) assert.throws(() => validateSnapshotName(bad), /not a snapshot name/);
    assert.throws(() => validateSnapshotName('auto-mine'), /reserved for automatic checkpoints/);
    assert.equal(validateSnapshotName('auto-20260101-000000', { allowAuto: true }), 'auto-20260101-000000');
  });

  test('pruning removes the oldest automatic checkpoints beyond keep and never a user snapshot', () => {
    const snaps = [
      { name: 'auto-1', createdAt: '2026-01-01T00:00:01Z' },
      { name: 'mine', createdAt: '2026-01-01T00:00:00Z' },
      { name: 'auto-3', createdAt: '2026-01-01T00:00:03Z' },
      { name: 'auto-2', createdAt: '2026-01-01T00:00:02Z' },
      { name: 'auto-4', createdAt: '2026-01-01T00:00:04Z' },
    ];
    assert.deepEqual(autoToPrune(snaps, 2), ['auto-1', 'auto-2']);
    assert.deepEqual(autoToPrune(snaps, 10), []);
    assert.deepEqual(autoToPrune(snaps, 0), ['auto-1', 'auto-2', 'auto-3', 'auto-4']);
  });
});

describe('which sandbox a snapshot command acts on', () => {
  const a1 = sb();
  const a2 = sb({ name: 'coi-1a2b3c4d-2', slot: 2 });
  const other = sb({ name: 'coi-99999999-1', workspace: '/home/u/other' });

  test('-c wins over COI_CONTAINER, which wins over the workspace', () => {
    assert.deepEqual(resolveContainer({ flag: 'x', env: 'y', workspace: '/home/u/app', sandboxes: [a1] }), { name: 'x', how: 'flag' });
    assert.deepEqual(resolveContainer({ env: 'y', workspace: '/home/u/app', sandboxes: [a1] }), { name: 'y', how: 'env' });
    assert.deepEqual(resolveContainer({ workspace: '/home/u/app', sandboxes: [a1, other] }), { name: a1.name, how: 'workspace' });
  });

  test('several sandboxes in the workspace: an error naming each', () => {
    assert.throws(
      () => resolveContainer({ workspace: '/home/u/app', sandboxes: [a1, a2, other] }),
      (e: CoiError) => /2 sandboxes: coi-1a2b3c4d-1 .*coi-1a2b3c4d-2 .*choose one with -c NAME/.test(e.message) && !e.message.includes(other.name),
    );
  });

  test('none in the workspace: an error listing every sandbox there is, or saying there are none', () => {
    assert.throws(() => resolveContainer({ workspace: '/home/u/new', sandboxes: [other] }), /no sandbox for \/home\/u\/new; choose a sandbox with -c NAME .*coi-99999999-1/);
    assert.throws(() => resolveContainer({ workspace: undefined, sandboxes: [] }), /not a workspace, and there are no sandboxes; start one with coi shell/);
  });
});

describe('restore plan', () => {
  const snaps = [
    { name: 'first', createdAt: '2026-01-01T00:00:00Z', stateful: false },
    { name: 'second', createdAt: '2026-01-02T00:00:00Z', stateful: false },
    { name: 'mem', createdAt: '2026-01-03T00:00:00Z', stateful: true },
  ];

  test('a running sandbox: the session restarts, changes outside /workspace are lost, the workspace and newer snapshots are kept', () => {
    const p = restorePlan(sb(), snaps, 'first');
    assert.equal(p.refused, undefined);
    assert.equal(p.restart, true);
    assert.match(p.lost[0]!, /outside \/workspace since first/);
    assert.match(p.lost[1]!, /claude and every process .* stopped .* started again/);
    assert.match(p.kept[0]!, /workspace \/home\/u\/app: its files live on the host .* never touches them/);
    assert.match(p.kept.at(-1)!, /after first \(second, mem\)/);
    const text = describePlan(p);
    assert.match(text, /^Restoring coi-1a2b3c4d-1 to first/);
    assert.match(text, /This is lost:\n {2}- /);
  });

  test('a stopped sandbox is restored and stays stopped: nothing about a session is lost', () => {
    const p = restorePlan(sb({ state: 'stopped', persistent: true }), snaps, 'second');
    assert.equal(p.restart, false);
    assert.equal(p.lost.length, 1);
  });

  test('frozen, launching, changing state and stateful snapshots are refused with the reason', () => {
    assert.match(restorePlan(sb({ state: 'frozen' }), snaps, 'first').refused!.reason, /frozen by the guard/);
    assert.equal(restorePlan(sb({ state: 'frozen' }), snaps, 'first').refused!.remedy!.shell, 'coi resume coi-1a2b3c4d-1');
    assert.match(restorePlan(sb({ phase: 'creating' }), snaps, 'first').refused!.reason, /still being launched/);
    assert.match(restorePlan(sb({ state: 'stopping' }), snaps, 'first').refused!.reason, /is stopping/);
    assert.match(restorePlan(sb(), snaps, 'mem').refused!.reason, /stateful/);
  });

  test('an unknown snapshot is NOT_FOUND, listing the ones there are', () => {
    assert.throws(() => restorePlan(sb(), snaps, 'nope'), (e: CoiError) => e.code === 'NOT_FOUND' && /it has: first, second, mem/.test(e.message));
    assert.throws(() => restorePlan(sb(), [], 'nope'), /it has none/);
  });
});
