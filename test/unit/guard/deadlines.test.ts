import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { bootTimeMs, planDeadline, startTicksOf } from '../../../helper/guard/deadlines';
import { parseRuntimeLabel } from '../../../helper/sandbox/labels';

test('start ticks are field 22 of /proc/<pid>/stat, even when comm holds spaces and parentheses', () => {
  const stat = '4242 (evil) (x) y) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1000 10 18446744073709551615';
  assert.equal(startTicksOf(stat), 987654);
  assert.equal(startTicksOf('1 (init) S'), undefined);
});

test('boot time comes from the btime line of /proc/stat', () => {
  assert.equal(bootTimeMs('cpu  1 2 3\nbtime 1764220000\nprocesses 9\n'), 1_764_220_000_000);
  assert.equal(bootTimeMs('cpu 1\n'), undefined);
});

test('the warning comes a minute before the end, or a quarter of a short duration before it', () => {
  assert.deepEqual(planDeadline(1_000, { maxDurationMs: 3_600_000, autoStop: true, stopGraceful: true }), { stopAtMs: 3_601_000, warnAtMs: 3_541_000 });
  assert.deepEqual(planDeadline(0, { maxDurationMs: 20_000, autoStop: true, stopGraceful: true }), { stopAtMs: 20_000, warnAtMs: 15_000 });
});

test('the runtime label is read defensively: junk or a non-positive duration means no deadline', () => {
  assert.deepEqual(parseRuntimeLabel('{"maxDurationMs":20000,"autoStop":false}'), { maxDurationMs: 20000, autoStop: false, stopGraceful: true });
  for (const bad of [undefined, '', 'not json', '{"maxDurationMs":0}', '{"maxDurationMs":"5"}']) assert.equal(parseRuntimeLabel(bad), undefined, String(bad));
});
