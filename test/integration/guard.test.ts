import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { GuardClient } from '../../helper/guard/client';
import type { GuardEvent } from '../../helper/protocol/methods';
import { markOf } from '../../helper/guard/network/marks';
import { SETUP_NAMES } from '../../helper/setup/names';
import { cleanupLabelled, HELPER, requireIncus, TEST_LABEL, uniqueName } from './support';
import type { IncusClient } from '../../helper/incus/client';

const runId = randomBytes(4).toString('hex');
const dir = mkdtempSync(path.join(tmpdir(), 'coi-guard-test-'));
const socketPath = path.join(dir, 'guard.sock');
let c: IncusClient;
let guard: ChildProcess | undefined;

/** A guard of our own on a private socket, so the host's guard is left alone. */
function startGuard(): ChildProcess {
  const g = spawn(process.execPath, [HELPER, 'guard', 'run'], {
    // A scope of its own: this guard fences (and reaps) only sandboxes labelled with it, none here, and never
    // touches the host guard's network tables.
    env: { ...process.env, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: `gt${runId}`, COI_NET_STATE_DIR: path.join(dir, 'net'), COI_NET_CACHE_DIR: path.join(dir, 'cache'), COI_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  g.stderr?.resume();
  return g;
}

before(async () => {
  c = await requireIncus();
});
after(async () => {
  guard?.kill('SIGKILL');
  await cleanupLabelled(c, runId);
  rmSync(dir, { recursive: true, force: true });
});

function nextEvent(client: GuardClient, match: (e: GuardEvent) => boolean, timeoutMs = 60_000): Promise<GuardEvent> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no matching guard event')), timeoutMs);
    const on = (e: GuardEvent) => {
      if (!match(e)) return;
      clearTimeout(t);
      client.off('event', on);
      resolve(e);
    };
    client.on('event', on);
  });
}

const lifecycle = (name: string, action: string) => (e: GuardEvent) =>
  e.topic === 'incus' && e.event.source === `/1.0/instances/${name}` && e.event.action === action;

test('the guard relays Incus lifecycle events to subscribers, and they survive a kill -9 and restart', async () => {
  guard = startGuard();
  const client = new GuardClient({ socketPath, reconnect: true });
  client.connect({ timeoutMs: 1_000 }).catch(() => undefined);
  await client.waitConnected(15_000);
  await client.subscribe(['incus', 'guard']);
  const info = await client.info();
  assert.equal(info.socket, socketPath);
  assert.equal(info.guard.pid, guard.pid);
  assert.equal(info.incus.reachable, true);

  const name = uniqueName();
  const started = nextEvent(client, lifecycle(name, 'instance-started'));
  await c.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [TEST_LABEL]: runId }, start: true }, { timeoutMs: 120_000 });
  await started;

  // Crash the guard: no goodbye, no clean-up. A new one takes its socket over.
  const disconnected = new Promise<void>((r) => client.once('disconnected', () => r()));
  guard.kill('SIGKILL');
  await disconnected;
  const reconnected = new Promise<void>((r) => client.once('connected', () => r()));
  guard = startGuard();
  await reconnected;
  const after = await client.info();
  assert.equal(after.guard.pid, guard.pid, 'talking to the new guard');
  assert.equal(after.subscriptions >= 2, true, `the client resubscribed on its own (${after.subscriptions})`);

  // The new guard's event stream may connect a moment after its socket: wait for it, then act.
  for (let i = 0; i < 100 && !(await client.info()).eventsConnected; i++) await new Promise((r) => setTimeout(r, 100));
  const stopped = nextEvent(client, lifecycle(name, 'instance-stopped'));
  await c.setState(name, 'stop', { force: true });
  await stopped;
  client.close();
});

test('a second guard on the same socket refuses to start while the first answers', async () => {
  guard ??= startGuard();
  const probe = new GuardClient({ socketPath, reconnect: true });
  probe.connect({ timeoutMs: 500 }).catch(() => undefined);
  await probe.waitConnected(15_000);
  probe.close();
  const second = spawnSync(process.execPath, [HELPER, 'guard', 'run'], { env: { ...process.env, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: `gt${runId}`, COI_NET_STATE_DIR: path.join(dir, 'net') }, encoding: 'utf8', timeout: 20_000 });
  assert.equal(second.status, 1);
  assert.match(second.stderr, /a guard is already running on/);
});

test('a peer that is neither root nor in the admin group is refused, even when the socket file lets it in', async () => {
  guard ??= startGuard();
  chmodSync(dir, 0o755);
  chmodSync(socketPath, 0o666);
  // As "nobody": connect and ask guard/info; the guard must hang up without answering.
  const script = `
    const net = require('net');
    const s = net.connect(${JSON.stringify(socketPath)});
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'guard/info' });
    s.on('connect', () => s.write('Content-Length: ' + Buffer.byteLength(body) + '\\r\\n\\r\\n' + body));
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('close', () => { console.log(got.includes('"result"') ? 'ANSWERED' : 'REFUSED'); process.exit(0); });
    s.on('error', (e) => { console.log('ERROR ' + e.code); process.exit(0); });
    setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 10000);`;
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.stdout.trim(), 'REFUSED', `nobody must not be served: ${r.stdout} ${r.stderr}`);
});

// Tables of test guards that died pile up on a machine that runs the tests again and again, each holding one of
// the 31 mark tags. Here every tag is taken: 29 by dead guards' scopes with nothing left in them, one by a live
// guard, one by a scope that still has an instance (its tables are that sandbox's only fence).
test('a guard that finds every mark tag taken removes the tables of dead guards\' empty scopes and starts; live ones keep theirs', async (t) => {
  if (guard) {
    guard.kill('SIGTERM');
    await new Promise((r) => guard!.once('exit', r));
    guard = undefined;
  }
  const dead = spawnSync('true').pid!;
  const alive = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e6)', 'guard', 'run'], { stdio: 'ignore' });
  t.after(() => alive.kill('SIGKILL'));
  const scopes = Array.from({ length: 31 }, (_, i) => `z${runId}${i.toString(32)}`);
  const [liveScope, usedScope] = [scopes[29]!, scopes[30]!];
  const table = (scope: string, tag: number, owner: number | undefined) =>
    `table inet coi_guard_${scope} {\n${owner ? `\tcomment "coi guard pid ${owner}"\n` : ''}\tchain sb_x { }\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tmeta mark and 0xffff0000 vmap { 0x${markOf(tag, 1).toString(16).padStart(8, '0')} : jump sb_x }\n\t}\n}\ntable netdev coi_guard_ingress_${scope} {\n${owner ? `\tcomment "coi guard pid ${owner}"\n` : ''}}\n`;
  const script = scopes.map((s, i) => table(s, 3 + 2 * i, s === liveScope ? alive.pid : i % 2 === 0 ? dead : undefined)).join('');
  const removeAll = () => spawnSync('nft', ['-f', '-'], { input: scopes.flatMap((s) => [`table inet coi_guard_${s}`, `delete table inet coi_guard_${s}`, `table netdev coi_guard_ingress_${s}`, `delete table netdev coi_guard_ingress_${s}`]).join('\n') });
  t.after(removeAll);
  const planted = spawnSync('nft', ['-f', '-'], { input: script, encoding: 'utf8' });
  assert.equal(planted.status, 0, planted.stderr);
  await c.createInstance({ name: uniqueName(), source: { type: 'none' }, config: { [TEST_LABEL]: runId, 'user.coi.guard-scope': usedScope } });
  // Every tag the host guard (1) leaves is in use now, unless another test's guard runs: then even more so.

  const stderr: string[] = [];
  guard = startGuard();
  guard.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  const probe = new GuardClient({ socketPath, reconnect: true });
  probe.connect({ timeoutMs: 500 }).catch(() => undefined);
  try {
    await probe.waitConnected(20_000).catch(() => assert.fail(`the guard did not start:\n${stderr.join('')}`));
  } finally {
    probe.close();
  }
  const left = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout;
  const ofScope = (s: string) => left.split('\n').filter((l) => l.endsWith(`coi_guard_${s}`) || l.endsWith(`coi_guard_ingress_${s}`));
  assert.deepEqual(scopes.filter((s) => ofScope(s).length > 0), [liveScope, usedScope], 'only the live guard\'s scope and the one with an instance are left');
  assert.equal(ofScope(liveScope).length, 2);
  assert.match(stderr.join(''), /removed the tables of 29 scope\(s\) whose guard is gone/);
  // One the dead scopes held (3-59); not necessarily 3: another test's guard may hold a tag of its own.
  const tag = Number(/network marks of scope gt[0-9a-f]+: tag (\d+)\b/.exec(stderr.join(''))?.[1]);
  assert.ok(tag >= 3 && tag <= 59 && tag % 2 === 1, `the new guard took a freed tag, not ${tag}`);
});
