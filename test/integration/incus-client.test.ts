import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { CoiError, ErrorCodes } from '../../helper/errors';
import { IncusClient } from '../../helper/incus/client';
import { lifecycleOf } from '../../helper/incus/events';
import { ExecNotStarted, holdExec } from '../../helper/incus/exec-stream';
import { PassThrough } from 'node:stream';
import { UnixSocketTransport } from '../../helper/incus/transport';
import { SETUP_NAMES } from '../../helper/setup/names';
import { cleanupLabelled, requireIncus, TEST_LABEL, uniqueName } from './support';

const runId = randomBytes(4).toString('hex');
let c: IncusClient;

before(async () => {
  c = await requireIncus();
});
after(async () => {
  if (c) await cleanupLabelled(c, runId);
});

test('launches, execs in and deletes a labelled container, and the event stream reports each step', async () => {
  const name = uniqueName();
  const events = c.events({ types: ['lifecycle'] });
  await events.ready();
  const source = `/1.0/instances/${name}`;
  const seen: string[] = [];
  events.on('event', (e) => {
    const lc = lifecycleOf(e);
    if (lc?.source === source) seen.push(lc.action);
  });
  try {
    const started = events.waitFor((e) => lifecycleOf(e)?.source === source && lifecycleOf(e)?.action === 'instance-started', 60_000);
    await c.createInstance({
      name,
      source: { type: 'image', alias: SETUP_NAMES.baseImage },
      config: { [TEST_LABEL]: runId, 'user.coi.purpose': 'client-test' },
      start: true,
    }, { timeoutMs: 120_000 });
    await started;

    const inst = await c.getInstance(name);
    assert.equal(inst.config[TEST_LABEL], runId, 'the label is on the instance');
    assert.equal(inst.status, 'Running');

    const who = await c.exec(name, ['id', '-un'], { user: 1000, group: 1000, cwd: '/tmp' });
    assert.deepEqual(who, { exitCode: 0, stdout: 'code\n', stderr: '' });

    const failing = await c.exec(name, ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual(failing, { exitCode: 7, stdout: 'out\n', stderr: 'err\n' });

    const env = await c.exec(name, ['sh', '-c', 'echo "$GREETING"'], { env: { GREETING: 'hello from the host' } });
    assert.equal(env.stdout, 'hello from the host\n');

    const deleted = events.waitFor((e) => lifecycleOf(e)?.source === source && lifecycleOf(e)?.action === 'instance-deleted', 60_000);
    await c.deleteInstance(name, { force: true });
    await deleted;
    assert.equal(await c.instanceExists(name), false);
    for (const action of ['instance-created', 'instance-started', 'instance-stopped', 'instance-deleted']) {
      assert.ok(seen.includes(action), `saw ${action} (got ${seen.join(', ')})`);
    }
  } finally {
    events.close();
  }
});

test('a held exec runs its command only when released, and one held too long or given up never runs it', async () => {
  const name = uniqueName();
  await c.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [TEST_LABEL]: runId, 'user.coi.purpose': 'client-test' }, start: true }, { timeoutMs: 120_000 });
  const ran = async (mark: string) => (await c.exec(name, ['test', '-e', `/tmp/${mark}`])).exitCode === 0;
  const collect = () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    return { out, text: () => text };
  };
  const cmd = (mark: string) => ['sh', '-c', `touch /tmp/${mark}; echo "ran in $PWD as $(id -un)"; echo warn >&2; exit 3`];

  const held = holdExec(c, name, cmd('released'), { user: 1000, group: 1000, cwd: '/tmp', env: {} });
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(await ran('released'), false, 'nothing runs while the exec is held');
  const stdout = collect();
  const stderr = collect();
  assert.equal(await held.release({ stdout: stdout.out, stderr: stderr.out }), 3, 'the exit code of the command');
  assert.equal(stdout.text(), 'ran in /tmp as code\n');
  assert.equal(stderr.text(), 'warn\n');
  assert.equal(await ran('released'), true);

  // Incus gives up on an exec whose websockets are not all connected within 5 s.
  const late = holdExec(c, name, cmd('late'), {});
  await new Promise((r) => setTimeout(r, 4_500));
  await assert.rejects(late.release({ stdout: new PassThrough(), stderr: new PassThrough() }), ExecNotStarted);
  await new Promise((r) => setTimeout(r, 1_500));
  assert.equal(await ran('late'), false, 'a hold that ran out never starts the command');

  const dropped = holdExec(c, name, cmd('dropped'), {});
  await new Promise((r) => setTimeout(r, 200));
  dropped.abandon();
  await assert.rejects(dropped.release({ stdout: new PassThrough(), stderr: new PassThrough() }), ExecNotStarted);
  await new Promise((r) => setTimeout(r, 6_000));
  assert.equal(await ran('dropped'), false, 'a given-up exec never starts the command');
  await c.deleteInstance(name, { force: true });
});

test('a wait that outlives its timeout fails with TIMEOUT instead of hanging', async () => {
  const name = uniqueName();
  await c.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [TEST_LABEL]: runId }, start: true }, { timeoutMs: 120_000 });
  await assert.rejects(c.exec(name, ['sleep', '30'], { timeoutMs: 1_500 }), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.TIMEOUT);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  await assert.rejects(c.exec(name, ['sleep', '30'], { signal: ac.signal }), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.CANCELLED);
  await c.deleteInstance(name, { force: true });
});

test('Incus errors are typed: a missing instance is NOT_FOUND, a duplicate is ALREADY_EXISTS', async () => {
  await assert.rejects(c.getInstance('coi-it-does-not-exist'), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND);
  const name = uniqueName();
  await c.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [TEST_LABEL]: runId } });
  await assert.rejects(
    c.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [TEST_LABEL]: runId } }),
    (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.ALREADY_EXISTS,
  );
  await c.deleteInstance(name, { force: true });
});

test('an unreachable socket is INCUS_UNREACHABLE with a remedy that says how to start Incus', async () => {
  const dead = new IncusClient(new UnixSocketTransport('/run/coi-test-no-such.sock'));
  await assert.rejects(dead.server(), (e: unknown) => {
    assert.ok(e instanceof CoiError);
    assert.equal(e.code, ErrorCodes.INCUS_UNREACHABLE);
    assert.equal(e.remedy?.shell, 'sudo coi setup');
    return true;
  });
});
