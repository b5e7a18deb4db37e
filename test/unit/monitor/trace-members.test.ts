/**
 * Which trace events are the container's: the kernel's pid list holds numbers
 * that outlive their processes, so attribution is checked against the polls,
 * the forks the trace showed and the cgroup of a live pid.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { LOSS_GRACE_MS, PidOwner, TraceMembers } from '../../../helper/guard/monitor/trace-members';

function members(owners: Record<number, PidOwner> = {}) {
  let now = 1_000_000;
  const asked: number[] = [];
  const m = new TraceMembers((pid) => {
    asked.push(pid);
    return owners[pid] ?? 'gone';
  }, () => now);
  return { m, asked, advance: (ms: number) => (now += ms) };
}

test('polled pids count for two polls, then their numbers are let go', () => {
  const { m } = members();
  m.polledNow([10, 11]);
  assert.equal(m.counts(10), true);
  m.polledNow([10]);
  assert.equal(m.counts(11), true, 'still within the previous poll');
  m.polledNow([10]);
  assert.equal(m.counts(11), false, 'gone two polls ago: the number may be a host process by now');
  assert.equal(m.counts(10), true);
});

test('a fork counts when its parent does, down the chain; a host parent\'s child does not', () => {
  const { m } = members({ 500: 'other' });
  m.polledNow([10]);
  assert.equal(m.fork(10, 20), true);
  assert.equal(m.fork(20, 21), true);
  assert.equal(m.counts(21), true, 'a grandchild that is gone is still known');
  assert.equal(m.fork(500, 501), false);
  assert.equal(m.counts(501), false);
  m.polledNow([10]);
  assert.equal(m.counts(21), true, 'forks are kept over the next poll too');
  m.polledNow([10]);
  assert.equal(m.counts(21), false);
});

test('an unknown pid counts only when its cgroup says it is the container\'s; it is then remembered', () => {
  const { m, asked } = members({ 30: 'ours', 31: 'other' });
  m.polledNow([10]);
  assert.equal(m.counts(30), true);
  assert.equal(m.counts(31), false);
  assert.equal(m.counts(32), false, 'gone and unknown');
  asked.length = 0;
  assert.equal(m.fork(30, 33), true);
  assert.deepEqual(asked, [], 'known now: not asked again');
});

test('after lost events, unknown pids that are gone count for a while; live host processes never', () => {
  const { m, advance } = members({ 31: 'other' });
  m.polledNow([10]);
  m.lost();
  assert.equal(m.counts(32), true);
  assert.equal(m.counts(31), false);
  advance(LOSS_GRACE_MS + 1);
  assert.equal(m.counts(40), false);
});

test('a restart forgets every pid', () => {
  const { m } = members();
  m.polledNow([10]);
  m.fork(10, 11);
  m.reset();
  assert.equal(m.counts(10), false);
  assert.equal(m.counts(11), false);
});
