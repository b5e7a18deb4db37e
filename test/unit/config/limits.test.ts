import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { limitsToIncus, runtimeLimits } from '../../../helper/config/limits';
import { configSchema, defaults } from '../../../helper/config/schema';

const limits = (patch: object) => configSchema().parse({ limits: patch }).limits;

test('default limits set no Incus key: Incus defaults apply', () => {
  assert.deepEqual(limitsToIncus(defaults().limits), { config: {}, rootDevice: {} });
  assert.deepEqual(runtimeLimits(defaults().limits), { autoStop: true, stopGraceful: true });
});

test('every limit maps to its Incus key; disk I/O and size go on the root disk device', () => {
  const l = limits({
    cpu: { count: '0-3', allowance: '50%', priority: 3 },
    memory: { limit: '128MiB', enforce: 'hard', swap: false },
    disk: { read: '50MiB', write: '20MiB', max: '1000iops', priority: 7, size: '20GiB', tmpfs_size: '1GiB' },
    runtime: { max_processes: 50, max_duration: '20s', auto_stop: true, stop_graceful: false },
  });
  assert.deepEqual(limitsToIncus(l), {
    config: {
      'limits.cpu': '0-3',
      'limits.cpu.allowance': '50%',
      'limits.cpu.priority': '3',
      'limits.memory': '128MiB',
      'limits.memory.enforce': 'hard',
      'limits.memory.swap': 'false',
      'limits.processes': '50',
      'limits.disk.priority': '7',
    },
    rootDevice: { 'limits.read': '50MiB', 'limits.write': '20MiB', 'limits.max': '1000iops', size: '20GiB' },
  });
  assert.deepEqual(runtimeLimits(l), { maxDurationMs: 20_000, autoStop: true, stopGraceful: false, tmpfsSize: '1GiB' });
});

test('memory enforce/swap come with a memory limit; swap off alone still turns swap off', () => {
  assert.deepEqual(limitsToIncus(limits({ memory: { limit: '2GiB' } })).config, { 'limits.memory': '2GiB', 'limits.memory.enforce': 'hard', 'limits.memory.swap': 'true' });
  assert.deepEqual(limitsToIncus(limits({ memory: { enforce: 'soft' } })).config, {});
  assert.deepEqual(limitsToIncus(limits({ memory: { swap: 'false' } })).config, { 'limits.memory.swap': 'false' });
});

test('priority 0 is a value (lowest), not "unset"', () => {
  assert.deepEqual(limitsToIncus(limits({ cpu: { priority: 0 }, disk: { priority: 0 } })).config, { 'limits.cpu.priority': '0', 'limits.disk.priority': '0' });
});

test('a CPU count and a pinning set pass through as written; 25ms/100ms allowance too', () => {
  assert.equal(limitsToIncus(limits({ cpu: { count: '2', allowance: '25ms/100ms' } })).config['limits.cpu.allowance'], '25ms/100ms');
  assert.equal(limitsToIncus(limits({ cpu: { count: '1,3,5-7' } })).config['limits.cpu'], '1,3,5-7');
});

test('runtime: 4h in milliseconds; auto_stop false is kept for the guard to only warn', () => {
  assert.deepEqual(runtimeLimits(limits({ runtime: { max_duration: '4h', auto_stop: false } })), { maxDurationMs: 14_400_000, autoStop: false, stopGraceful: true });
});
