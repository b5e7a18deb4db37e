import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { reapReason } from '../../../helper/guard/reaper';
import type { SandboxInfo } from '../../../helper/sandbox/labels';

const sb = (over: Partial<SandboxInfo> = {}): SandboxInfo => ({
  name: 'coi-1a2b3c4d-1',
  workspace: '/w',
  slot: 1,
  kind: 'shell',
  state: 'stopped',
  tool: 'shell',
  persistent: false,
  session: 's',
  profile: 'default',
  phase: 'ready',
  createdAt: '2026-01-01T00:00:00Z',
  image: 'coi-base',
  ...over,
});
const alive = (pids: number[]) => (pid: number) => pids.includes(pid);

test('a stopped ephemeral sandbox is reaped; a persistent or launching one is not', () => {
  assert.equal(reapReason(sb(), alive([])), 'its session ended');
  assert.equal(reapReason(sb({ persistent: true }), alive([])), undefined);
  assert.equal(reapReason(sb({ phase: 'creating' }), alive([])), undefined);
  assert.equal(reapReason(sb({ state: 'running' }), alive([])), undefined);
});

test('a hold by a live coi process keeps a stopped ephemeral sandbox; a dead holder\'s hold counts for nothing', () => {
  assert.equal(reapReason(sb({ holdPid: 4242 }), alive([4242])), undefined);
  assert.equal(reapReason(sb({ holdPid: 4242 }), alive([])), 'its session ended');
  assert.equal(reapReason(sb({ kind: 'run', state: 'running', launcherPid: 7, holdPid: 9 }), alive([9])), undefined);
  assert.equal(reapReason(sb({ kind: 'run', state: 'running', launcherPid: 7 }), alive([])), 'the coi run that owned it is gone');
});
