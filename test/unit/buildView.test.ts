// "Build Image" in the editor: the quick pick's choices and their build/start
// params, and the helper's $/build/progress and $/build/finished notes as the
// progress notification, the "COI Build" channel's lines and the closing
// message (extension/build/model.ts).
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { BuildFinished, BuildProgress, BuildStart } from '../../helper/protocol/methods';
import {
  BuildFinishedNote,
  BuildFollower,
  BuildProgressNote,
  BuildProgressText,
  buildPick,
  customBuildParams,
  logLineOf,
  outcomeOf,
  validateImageName,
  workspaceBuildParams,
} from '../../extension/build/model';

test('the choices and the params they send, valid for build/start', () => {
  const pick = buildPick('demo');
  assert.deepEqual(pick.items.map((i) => i.value), [{ kind: 'workspace', force: false }, { kind: 'workspace', force: true }, { kind: 'custom' }]);
  assert.equal(pick.active, 0);
  const plain = workspaceBuildParams('/src/demo', false);
  assert.deepEqual(plain, { kind: 'default', workspace: '/src/demo' });
  assert.deepEqual(workspaceBuildParams('/src/demo', true), { kind: 'default', workspace: '/src/demo', force: true });
  const custom = customBuildParams(' coi-demo ', '/src/demo/build.sh', ' coi-base ');
  assert.deepEqual(custom, { kind: 'custom', name: 'coi-demo', script: '/src/demo/build.sh', base: 'coi-base' });
  assert.deepEqual(customBuildParams('x', '/s.sh', ''), { kind: 'custom', name: 'x', script: '/s.sh' }, 'an empty base: the helper\'s default');
  for (const p of [plain, custom]) assert.ok(BuildStart.params.safeParse(p).success, JSON.stringify(p));
});

test('image names: what the input box refuses', () => {
  assert.equal(validateImageName('coi-demo_1.2'), undefined);
  assert.match(validateImageName('')!, /Type a name/);
  assert.match(validateImageName('-x')!, /Letters, digits/);
  assert.match(validateImageName('a b')!, /Letters, digits/);
  assert.match(validateImageName('coi')!, /default image/);
  assert.match(validateImageName('x'.repeat(65))!, /64/);
});

const note = (n: BuildProgressNote) => BuildProgress.params.parse(n);

test('progress: a step\'s title is the message, its log lines follow it; the channel gets both', () => {
  const t = new BuildProgressText();
  const begin = note({ buildId: 'b1', step: 'commands', title: '2 command(s) as root' });
  const line = note({ buildId: 'b1', step: 'commands', line: 'hello from the build' });
  assert.equal(t.accept(begin), 'commands: 2 command(s) as root');
  assert.equal(t.accept(line), 'commands: 2 command(s) as root — hello from the build');
  assert.equal(logLineOf(begin), '==> [commands] 2 command(s) as root');
  assert.equal(logLineOf(line), '    hello from the build');
  assert.equal(logLineOf({ buildId: 'b1', step: 'x' }), undefined);
  assert.ok(t.accept(note({ buildId: 'b1', step: 'packages', line: 'y'.repeat(500) })).length <= 120, 'a long apt line is clipped');
});

test('outcomes: built, cached, cancelled (a warning, not an error) and failed (names the step and log)', () => {
  const result = { buildId: 'b1', name: 'coi-demo', fingerprint: 'abcdef0123456789', versionAlias: 'coi-demo-20261127-080000', outcome: 'built' as const, sizeBytes: 300 * 1024 * 1024, seconds: 42.25, log: '/h/.coi/logs/build-b1.log', tools: {}, pruned: [] };
  const ok: BuildFinishedNote = BuildFinished.params.parse({ buildId: 'b1', ok: true, result });
  assert.deepEqual(outcomeOf(ok), { severity: 'info', message: 'COI: image coi-demo built: abcdef012345 (coi-demo-20261127-080000), 300 MiB, 42.3 s', logFile: '/h/.coi/logs/build-b1.log' });
  assert.match(outcomeOf({ ...ok, result: { ...result, outcome: 'up-to-date' } }).message, /coi-demo already up to date/);
  const cancelled = outcomeOf({ buildId: 'b1', ok: false, error: { code: 'CANCELLED', message: 'build cancelled during step "commands"', step: 'commands', log: '/l' } });
  assert.equal(cancelled.severity, 'warning');
  assert.equal(cancelled.message, 'COI: build cancelled during step "commands"; its temporary container was removed and no alias was moved.');
  const failed = outcomeOf({ buildId: 'b1', ok: false, error: { code: 'INCUS_API', message: 'build step "commands" failed: exit 3\n  log: /l', step: 'commands', log: '/l' } });
  assert.deepEqual(failed, { severity: 'error', message: 'COI: build step "commands" failed: exit 3', logFile: '/l' });
});

test('the follower: notes that come before build/start answers are replayed; other builds\' are ignored; one finish', () => {
  const seen: string[] = [];
  const f = new BuildFollower({ progress: (n) => seen.push(`${n.buildId}:${n.step}`), finished: (n) => seen.push(`${n.buildId}:finished:${n.ok}`) });
  f.progress(note({ buildId: 'other', step: 'plan', title: 'x' }));
  f.progress(note({ buildId: 'mine', step: 'lock', title: 'x' }));
  assert.deepEqual(seen, [], 'nothing before the id is known');
  f.started('mine');
  assert.deepEqual(seen, ['mine:lock']);
  f.progress(note({ buildId: 'mine', step: 'base', title: 'x' }));
  f.progress(note({ buildId: 'other', step: 'base', title: 'x' }));
  f.finish({ buildId: 'other', ok: true });
  assert.equal(f.finished, false);
  f.finish({ buildId: 'mine', ok: false, error: { code: 'CANCELLED', message: 'c' } });
  f.finish({ buildId: 'mine', ok: true });
  f.progress(note({ buildId: 'mine', step: 'late', title: 'x' }));
  assert.deepEqual(seen, ['mine:lock', 'mine:base', 'mine:finished:false']);
  assert.equal(f.finished, true);
  assert.equal(f.buildId, 'mine');
});
