/**
 * The monitor loop with its host replaced by fakes that record the order of
 * what happens: containment before anything else, the right action per level
 * and policy, de-duplication, frozen state, the kill and its bookkeeping,
 * peeks on exec and the kernel's environ trace.
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import type { AuditRecord } from '../../../helper/guard/monitor/audit';
import { LoopCollector, MonitorLoop } from '../../../helper/guard/monitor/loop';
import type { Snapshot } from '../../../helper/guard/monitor/model';
import { defaultPolicy, MonitorPolicy } from '../../../helper/guard/monitor/policy';
import { isStopping } from '../../../helper/guard/monitor/responder';
import { silentLog } from '../../../helper/log';
import { agent, init, proc, snap, sock, sockFd } from './build';

interface World {
  loop: MonitorLoop;
  steps: string[];
  records: AuditRecord[];
  pushed: AuditRecord[];
  frozen: { value: boolean };
  next: (s: Snapshot) => void;
  peekResult: (s: Snapshot) => void;
  ended: string[];
  killGate: { release: () => void };
}

/** Pids below 1000 are the container's, others the host's; 999 has exited. */
const ownerOf = (pid: number) => (pid === 999 ? 'gone' : pid < 1000 ? 'ours' : 'other');

function world(policy: MonitorPolicy = defaultPolicy(), opts: { killFails?: number; stopping?: () => Promise<boolean> } = {}): World {
  const steps: string[] = [];
  const records: AuditRecord[] = [];
  const pushed: AuditRecord[] = [];
  const frozen = { value: false };
  const ended: string[] = [];
  let current = snap([init, agent()]);
  let peeked = snap([]);
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  let failures = opts.killFails ?? 0;
  const collector: LoopCollector = {
    collect: () => current,
    peek: () => peeked,
    reset: () => steps.push('reset'),
    stats: { polls: 0, peeks: 0, lastDurationMs: 0 },
  };
  let ids = 0;
  const loop = new MonitorLoop({
    container: 'coi-test-1',
    policy,
    collector,
    freeze: () => {
      steps.push('freeze');
      frozen.value = true;
      return { ok: true, ms: 0 };
    },
    isFrozen: () => frozen.value,
    ...(opts.stopping ? { stopping: opts.stopping } : {}),
    incusFreeze: async () => {
      steps.push('incus-freeze');
    },
    kill: async () => {
      steps.push('kill');
      await gate;
      if (failures-- > 0) throw new Error('Incus said no');
      return { stoppedMs: 900, deleted: true, forensics: 'coi-test-1-forensics-20260101-000000' };
    },
    audit: {
      append: async (r) => {
        steps.push(`append:${r.action}`);
        records.push(r);
      },
    },
    publish: (r) => {
      steps.push(`publish:${r.action}`);
      pushed.push(r);
    },
    onEnded: (s) => ended.push(s),
    ownerOf,
    log: silentLog,
    intervalMs: 1_000_000,
    peekFollowUpsMs: [],
    newId: () => `id-${++ids}`,
  });
  return { loop, steps, records, pushed, frozen, next: (s) => (current = s), peekResult: (s) => (peeked = s), ended, killGate: { release } };
}

const shellOnSocket = () => {
  const s = sock('198.51.100.2', 443);
  return proc(300, 200, ['sh', '-i'], { fds: [sockFd(0, s), sockFd(1, s), sockFd(2, s)] });
};

const later = (s: Snapshot, ms: number): Snapshot => ({ ...s, takenAt: s.takenAt + ms, monotonicMs: (s.monotonicMs ?? 0) + ms });

test('start writes an INFO line; a quiet container adds nothing', async () => {
  const w = world();
  w.loop.start();
  w.loop.tick();
  await w.loop.flush();
  assert.deepEqual(w.records.map((r) => [r.level, r.title, r.action]), [['info', 'Monitoring started', 'logged']]);
  assert.equal(w.loop.state, 'watching');
  await w.loop.stop('test over');
  assert.equal(w.records.at(-1)?.title, 'Monitoring stopped');
  assert.deepEqual(w.ended, ['stopped']);
});

test('CRITICAL: the freezer is written before anything is recorded or pushed, then the kill runs and is recorded', async () => {
  const w = world();
  w.loop.start();
  w.steps.length = 0;
  w.next(snap([init, agent(), shellOnSocket()]));
  w.loop.tick();
  // Synchronously, in this order: freeze, then the record handed out.
  assert.deepEqual(w.steps.slice(0, 3), ['freeze', 'publish:killed', 'append:killed']);
  assert.equal(w.loop.state, 'killing');
  const crit = w.pushed.find((r) => r.level === 'critical')!;
  assert.equal(crit.category, 'reverse_shell');
  assert.ok(crit.response?.frozenAt && crit.response.detectedAt, 'timing recorded');
  w.killGate.release();
  await new Promise((r) => setImmediate(r));
  await w.loop.flush();
  assert.equal(w.loop.state, 'killed');
  const done = w.records.find((r) => r.title === 'Sandbox killed')!;
  assert.match(done.description, /forensic copy kept as coi-test-1-forensics-/);
  assert.deepEqual(w.ended, ['killed']);
  // Nothing more after the kill.
  w.loop.tick();
  assert.equal(w.steps.filter((s) => s === 'kill').length, 1);
});

test('HIGH pauses once: the next HIGH while frozen is "logged (already paused)"; a thaw is noticed', async () => {
  const w = world();
  w.loop.start();
  const base = snap([init, agent(), proc(400, 200, ['cat', '/workspace/big'], { io: { readBytes: 0, writeBytes: 0 } })]);
  w.next(base);
  w.loop.tick();
  w.steps.length = 0;
  w.next(later(snap([init, agent(), proc(400, 200, ['cat', '/workspace/big'], { io: { readBytes: 120 * 1024 * 1024, writeBytes: 0 } })]), 1_000));
  w.loop.tick();
  assert.deepEqual(w.steps.slice(0, 3), ['freeze', 'publish:paused', 'append:paused']);
  await w.loop.flush();
  assert.ok(w.steps.includes('incus-freeze'));
  assert.equal(w.loop.state, 'frozen');
  // Another process reads a lot (a new key) while frozen: recorded, not frozen again.
  w.steps.length = 0;
  w.next(later(snap([init, agent(), proc(401, 200, ['dd'], { io: { readBytes: 0, writeBytes: 0 } })]), 3_000));
  w.loop.tick();
  w.next(later(snap([init, agent(), proc(401, 200, ['dd'], { io: { readBytes: 200 * 1024 * 1024, writeBytes: 0 } })]), 3_500));
  w.loop.tick();
  assert.ok(!w.steps.includes('freeze'));
  assert.ok(w.pushed.some((r) => r.action === 'logged (already paused)'));
  // coi resume thawed it: watching again.
  w.frozen.value = false;
  w.loop.tick();
  assert.equal(w.loop.state, 'watching');
  await w.loop.stop('done');
});

test('the policy decides: no kill → CRITICAL pauses; no pause → HIGH is alerted; WARNING is alerted, INFO logged', async () => {
  const w = world({ ...defaultPolicy(), killOnCritical: false });
  w.loop.start();
  w.next(snap([init, agent(), shellOnSocket()]));
  w.loop.tick();
  assert.equal(w.pushed.find((r) => r.level === 'critical')?.action, 'paused');
  assert.equal(w.loop.state, 'frozen');
  assert.ok(!w.steps.includes('kill'));

  const v = world({ ...defaultPolicy(), pauseOnHigh: false, killOnCritical: false });
  v.loop.start();
  v.next(snap([init, agent(), shellOnSocket()]));
  v.loop.tick();
  assert.equal(v.pushed.find((r) => r.level === 'critical')?.action, 'alerted');
  assert.ok(!v.steps.includes('freeze'));

  const u = world();
  u.loop.start();
  u.next(snap([init, agent(), proc(500, 200, ['cat', '/proc/1/environ', '/proc/7/environ'])]));
  u.loop.tick();
  const warn = u.pushed.find((r) => r.level === 'warning')!;
  assert.equal(warn.action, 'alerted');
  assert.ok(!u.steps.includes('freeze'));
  for (const x of [w, v, u]) await x.loop.stop('done');
});

test('the same finding within 30 s is folded, not repeated', async () => {
  const w = world({ ...defaultPolicy(), killOnCritical: false, pauseOnHigh: false });
  w.loop.start();
  w.next(snap([init, agent(), shellOnSocket()]));
  for (let i = 0; i < 5; i++) w.loop.tick();
  assert.equal(w.pushed.filter((r) => r.category === 'reverse_shell').length, 1);
  await w.loop.stop('done');
});

test('a failed kill stays frozen, is recorded, and is retried', async () => {
  const w = world(defaultPolicy(), { killFails: 1 });
  w.loop.start();
  w.next(snap([init, agent(), shellOnSocket()]));
  w.loop.tick();
  w.killGate.release();
  await new Promise((r) => setTimeout(r, 400));
  await w.loop.flush();
  assert.ok(w.records.some((r) => r.action === 'kill failed' && r.level === 'critical'));
  assert.equal(w.steps.filter((s) => s === 'kill').length, 2);
  assert.equal(w.loop.state, 'killed');
});

test('an exec is peeked at once with the instant detectors; the kernel environ trace reports a reader that is gone', async () => {
  const w = world();
  w.loop.start();
  w.loop.tick();
  w.peekResult(snap([init, agent(), shellOnSocket()], { partial: true }));
  w.loop.onTrace({ kind: 'exec', pid: 300, comm: 'sh', filename: '/usr/bin/sh' });
  // Synchronous: the freeze happened inside onTrace.
  assert.equal(w.steps.filter((s) => s === 'freeze').length, 1);
  assert.equal(w.loop.state, 'killing');

  const v = world();
  v.loop.start();
  v.loop.tick();
  v.peekResult(snap([init, agent(), proc(250, 200, ['bash'])], { partial: true }));
  v.loop.onTrace({ kind: 'fork', pid: 250, comm: 'bash', child: 251, childComm: 'bash' });
  v.loop.onTrace({ kind: 'exec', pid: 251, comm: 'cat', filename: '/usr/bin/cat' });
  v.loop.onTrace({ kind: 'environ-open', pid: 251, comm: 'cat' });
  const w2 = v.pushed.find((r) => r.category === 'credential_access')!;
  assert.equal(w2.level, 'warning');
  assert.equal(w2.evidence.rule, 'credential-scan/proc-environ-open');
  const lineage = (w2.evidence.process as { lineage: { pid: number; comm: string }[] }).lineage;
  assert.deepEqual(lineage.map((l) => l.pid), [251, 250, 200, 100], 'the chain of a reader that already exited, through its parent');
  assert.match(w2.description, /\/usr\/bin\/cat, already exited/);
  w.killGate.release();
  await w.loop.flush();
  await v.loop.stop('done');
});

test('a reader seen by its command line and by the kernel trace is one WARNING, not two', async () => {
  const w = world();
  w.loop.start();
  w.loop.tick();
  // Still running when the peek reads it: its command line names the files too.
  w.peekResult(snap([init, agent(), proc(250, 200, ['bash']), proc(251, 250, ['cat', '/proc/1/environ', '/proc/22/environ'])], { partial: true }));
  w.loop.onTrace({ kind: 'fork', pid: 250, comm: 'bash', child: 251, childComm: 'bash' });
  w.loop.onTrace({ kind: 'exec', pid: 251, comm: 'cat', filename: '/usr/bin/cat' });
  w.loop.onTrace({ kind: 'environ-open', pid: 251, comm: 'cat' });
  await new Promise((r) => setTimeout(r, 20));
  const warnings = w.pushed.filter((r) => r.category === 'credential_access');
  assert.deepEqual(warnings.map((r) => [r.level, r.title]), [['warning', "Reading other processes' environments"]]);
  await w.loop.stop('done');
});

test('trace events of host processes are not the container\'s: no peek, no finding (a pid list holds numbers, which wrap)', async () => {
  const w = world();
  w.loop.start();
  w.loop.tick();
  w.steps.length = 0;
  // Were they the container's, each of these would be a finding.
  w.peekResult(snap([init, agent(), shellOnSocket()], { partial: true }));
  w.loop.onTrace({ kind: 'exec', pid: 5453, comm: 'ps', filename: '/usr/bin/ps' });
  w.loop.onTrace({ kind: 'environ-open', pid: 5453, comm: 'ps' });
  // A host process's child, gone by the time its read is seen, is not adopted either.
  w.loop.onTrace({ kind: 'fork', pid: 5452, comm: 'sh', child: 999, childComm: 'sh' });
  w.loop.onTrace({ kind: 'environ-open', pid: 999, comm: 'cat' });
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(w.steps, [], 'nothing frozen, recorded or pushed');
  assert.equal(w.loop.state, 'watching');

  // After the kernel said it dropped events, a reader that is gone and unknown counts (its fork may be the one lost);
  // a live host process still does not.
  w.peekResult(snap([init, agent()], { partial: true }));
  w.loop.onTrace({ kind: 'lost', cpu: 0 });
  w.loop.onTrace({ kind: 'environ-open', pid: 5453, comm: 'ps' });
  const findings = () => w.pushed.filter((r) => r.level !== 'info').map((r) => r.evidence.rule);
  assert.deepEqual(findings(), []);
  w.loop.onTrace({ kind: 'environ-open', pid: 999, comm: 'cat' });
  assert.deepEqual(findings(), ['credential-scan/proc-environ-open']);
  w.killGate.release();
  await w.loop.stop('done');
});

test('a restart of the container forgets what was known', async () => {
  const w = world();
  w.loop.start();
  w.loop.tick();
  w.loop.restarted();
  assert.ok(w.steps.includes('reset'));
  await w.loop.stop('done');
});

test('a thaw that is the container\'s stop under way is not frozen again; a thaw by coi resume is watched again', async () => {
  let stopping = true;
  const w = world({ ...defaultPolicy(), killOnCritical: false }, { stopping: async () => stopping });
  w.loop.start();
  w.next(snap([init, agent()]));
  w.loop.tick();
  w.next(later(snap([init, agent(), shellOnSocket()]), 1_000));
  w.loop.tick();
  assert.equal(w.loop.state, 'frozen');
  await w.loop.flush();
  // Incus stops it: SIGKILL, then a thaw; the shell is still there for a moment.
  w.frozen.value = false;
  w.steps.length = 0;
  for (let i = 0; i < 3; i++) {
    w.next(later(snap([init, agent(), shellOnSocket()]), 40_000 + i * 500));
    w.loop.tick();
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(!w.steps.includes('freeze'), `not frozen again during the stop: ${w.steps.join(', ')}`);
  // Without a stop under way, the same thaw is a resume: watched (and the shell frozen) again.
  stopping = false;
  const w2 = world({ ...defaultPolicy(), killOnCritical: false }, { stopping: async () => stopping });
  w2.loop.start();
  w2.next(snap([init, agent()]));
  w2.loop.tick();
  w2.next(later(snap([init, agent(), shellOnSocket()]), 1_000));
  w2.loop.tick();
  await w2.loop.flush();
  w2.frozen.value = false;
  w2.loop.tick();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(w2.loop.state, 'watching');
  await w.loop.stop('done');
  await w2.loop.stop('done');
});

test('a stop or delete of this container among Incus\'s running operations counts; others do not', () => {
  const op = (description: string, name: string) => ({ description, resources: { instances: [`/1.0/instances/${name}`] } });
  assert.equal(isStopping([op('Stopping instance', 'coi-a-1')], 'coi-a-1'), true);
  assert.equal(isStopping([op('Deleting instance', 'coi-a-1')], 'coi-a-1'), true);
  assert.equal(isStopping([op('Stopping instance', 'coi-a-10')], 'coi-a-1'), false);
  assert.equal(isStopping([op('Executing command', 'coi-a-1'), op('Freezing instance', 'coi-a-1')], 'coi-a-1'), false);
  assert.equal(isStopping([], 'coi-a-1'), false);
});

test('DNS names from the resolver log: a tunnel freezes at the next poll with the names as evidence; names are not taken in while frozen', async () => {
  const w = world();
  w.loop.start();
  const t0 = Date.now();
  w.next({ ...snap([init, agent()]), takenAt: t0 });
  w.loop.tick();
  w.steps.length = 0;
  const names = ['mfrggzdfmztwq2lknnwg', 'k3j5h7g9f2d4s6a8q2w4', 'ovzwc3tfon2gk4tfmq2a', 'p2x7k4m9q3w8e5r6t1y7', 'nbswy3dpeb3w64tmmq2x'].map((l, i) => `${l}.${i}.t.ex.io`);
  for (const [i, name] of names.entries()) w.loop.onDnsQuery({ name, time: t0 + i });
  w.next({ ...snap([init, agent()]), takenAt: t0 + 250 });
  w.loop.tick();
  assert.deepEqual(w.steps.slice(0, 3), ['freeze', 'publish:paused', 'append:paused']);
  const high = w.pushed.find((r) => r.category === 'dns_tunnel')!;
  assert.equal(high.evidence.rule, 'dns-tunnel/high-entropy');
  assert.deepEqual((high.evidence as { dns?: { examples: string[] } }).dns?.examples, names);
  // Frozen: nothing is taken in (and the judged names are let go, which only shows once the 30 s de-duplication has passed).
  w.loop.onDnsQuery({ name: `zzzz${names[0]}`, time: t0 + 300 });
  w.frozen.value = false;
  w.loop.tick();
  assert.equal(w.loop.state, 'watching');
  w.steps.length = 0;
  w.next({ ...snap([init, agent()]), takenAt: t0 + 40_000 });
  w.loop.onDnsQuery({ name: 'registry.npmjs.org', time: t0 + 39_000 });
  w.loop.tick();
  assert.deepEqual(w.steps, []);
  await w.loop.stop('done');
});
