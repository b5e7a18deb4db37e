import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { instanceEnded } from '../../../helper/incus/events';
import type { RawEvent } from '../../../helper/incus/types';

const lifecycle = (action: string, source: string): RawEvent => ({ type: 'lifecycle', timestamp: '2026-11-27T08:00:00Z', metadata: { action, source } });

test('a delete or stop of the attached instance ends its session; other actions and instances do not', () => {
  assert.equal(instanceEnded(lifecycle('instance-deleted', '/1.0/instances/coi-a-1'), 'coi-a-1'), 'deleted');
  assert.equal(instanceEnded(lifecycle('instance-stopped', '/1.0/instances/coi-a-1'), 'coi-a-1'), 'stopped');
  assert.equal(instanceEnded(lifecycle('instance-shutdown', '/1.0/instances/coi-a-1?project=default'), 'coi-a-1'), 'stopped');
  assert.equal(instanceEnded(lifecycle('instance-exec', '/1.0/instances/coi-a-1'), 'coi-a-1'), undefined);
  assert.equal(instanceEnded(lifecycle('instance-paused', '/1.0/instances/coi-a-1'), 'coi-a-1'), undefined, 'frozen by the guard: the session waits');
  assert.equal(instanceEnded(lifecycle('instance-deleted', '/1.0/instances/coi-a-10'), 'coi-a-1'), undefined);
  assert.equal(instanceEnded(lifecycle('instance-snapshot-deleted', '/1.0/instances/coi-a-1/snapshots/s1'), 'coi-a-1'), undefined);
  assert.equal(instanceEnded({ type: 'operation', timestamp: 'x', metadata: { action: 'instance-deleted', source: '/1.0/instances/coi-a-1' } }, 'coi-a-1'), undefined);
  assert.equal(instanceEnded({ type: 'lifecycle', timestamp: 'x', metadata: null }, 'coi-a-1'), undefined);
});
