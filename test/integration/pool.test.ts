/**
 * Warm sandboxes with real containers and a guard of this test's own (its
 * own socket, scope and lock directory: the host's guard and every other
 * engineer's sandboxes are left alone). The suite's image is an alias of its
 * own on coi-base, so "rebuilding the image" is moving that alias to another
 * image (the agent image coi), which is exactly what `coi build` does.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GuardClient } from '../../helper/guard/client';
import { removeAllRules, nftExec } from '../../helper/guard/network/nft';
import { tablesFor } from '../../helper/guard/network/names';
import type { IncusClient } from '../../helper/incus/client';
import { GuardNetworkStatus } from '../../helper/protocol/methods';
import { GuardPoolStatus } from '../../helper/pool/protocol';
import { POOL_LABELS } from '../../helper/pool/spec';
import type { RequestDef } from '../../helper/protocol/rpc';
import { SETUP_NAMES } from '../../helper/setup/names';
import { coi as runCoi, CoiResult, HELPER, requireIncus, sleep } from './support';

const RUN = randomBytes(3).toString('hex');
const SCOPE = `pl${RUN}`;
const PREFIX = `coi-pl${RUN}-`;
const IMAGE = `coi-pl${RUN}-img`;
const root = mkdtempSync('/tmp/coi-pool-');
chmodSync(root, 0o755);
const socketPath = path.join(root, 'guard.sock');
const guardLog = path.join(root, 'guard.log');
const home = path.join(root, 'home');
let c: IncusClient;
let guard: ChildProcess | undefined;

const guardEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  COI_GUARD_SOCKET: socketPath,
  COI_GUARD_SCOPE: SCOPE,
  COI_GUARD_LOCK_DIR: path.join(root, 'lock'),
  COI_NET_CACHE_DIR: path.join(root, 'cache'),
  COI_NET_STATE_DIR: path.join(root, 'state'),
  COI_GUARD_MONITOR: '0',
  COI_POOL_MIN_FREE_MIB: '256',
  // Small, so that the suite's workspaces reach it (one member each).
  COI_POOL_MAX: '3',
  COI_LOG_LEVEL: 'debug',
});

async function startGuard(): Promise<void> {
  const fd = openSync(guardLog, 'a');
  guard = spawn(process.execPath, [HELPER, 'guard', 'run'], { env: guardEnv(), stdio: ['ignore', fd, fd] });
  const probe = new GuardClient({ socketPath, reconnect: true });
  probe.connect({ timeoutMs: 500 }).catch(() => undefined);
  try {
    await probe.waitConnected(20_000);
  } finally {
    probe.close();
  }
}

async function guardRequest<P, R>(def: RequestDef<P, R>, params: P): Promise<R> {
  const g = new GuardClient({ socketPath });
  await g.connect({ timeoutMs: 3_000 });
  try {
    return await g.request(def, params);
  } finally {
    g.close();
  }
}

/** The real `coi` with this suite's HOME, prefix and guard. */
const coi = (args: string[], cwd: string, timeoutMs = 180_000): Promise<CoiResult> =>
  runCoi(args, { HOME: home, COI_CONTAINER_PREFIX: PREFIX, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: SCOPE }, timeoutMs, cwd);

function workspace(name: string): string {
  const ws = path.join(root, `ws-${name}`);
  mkdirSync(ws, { recursive: true });
  return ws;
}

async function ours(): Promise<Array<{ name: string; config: Record<string, string>; status: string }>> {
  return (await c.listInstances({ recursion: 1 })).filter((i) => i.name.startsWith(PREFIX)).map((i) => ({ name: i.name, config: i.config ?? {}, status: i.status }));
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = await f();
    if (v !== undefined) return v;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}\n${readFileSync(guardLog, 'utf8').split('\n').slice(-30).join('\n')}`);
}

/** The idle members of this run, once there are `n`. */
const idleMembers = (n: number) =>
  until(`${n} idle warm member(s)`, async () => {
    const idle = (await ours()).filter((i) => i.config[POOL_LABELS.state] === 'idle');
    return idle.length >= n ? idle : undefined;
  });

before(async () => {
  c = await requireIncus();
  const base = await c.imageAlias(SETUP_NAMES.baseImage);
  await c.run('POST', c.url('/1.0/images/aliases'), { name: IMAGE, target: base, description: 'pool test' });
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "${IMAGE}"\n\n[tool]\nname = "shell"\n\n[pool]\nsize = 1\n`);
  await startGuard();
});

after(async () => {
  guard?.kill('SIGTERM');
  for (const i of await ours().catch(() => [])) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  await c.run('DELETE', c.url(`/1.0/images/aliases/${IMAGE}`)).catch(() => undefined);
  await removeAllRules(nftExec(), tablesFor(SCOPE)).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('warm pool', () => {
  test('coi run takes the pre-started member: the sandbox name, the workspace mapped, protected paths read-only; the pool refills', async () => {
    const ws = workspace('run');
    assert.equal(spawnSync('git', ['init', '-q', ws]).status, 0);
    const warm = await coi(['pool', 'warm', '--wait', '120'], ws);
    assert.equal(warm.code, 0, warm.stderr);
    const member = warm.stdout.trim();
    assert.match(member, new RegExp(`^${PREFIX}[0-9a-f]{8}-1$`), 'a member has the name of the workspace\'s first slot');
    const [m] = await ours();
    assert.equal(m!.config['user.coi.workspace'], undefined, 'an idle member is no sandbox: no workspace label');
    assert.equal(JSON.parse(m!.config['user.coi.network']!).mode, 'allowlist', 'idle members are fenced with the strictest rules');
    const listed = await coi(['list', '--format', 'json'], ws);
    assert.deepEqual(JSON.parse(listed.stdout).sandboxes.filter((s: { name: string }) => s.name.startsWith(PREFIX)), [], 'listings leave idle members out');

    const r = await coi(['run', 'hostname; touch /workspace/made; (echo x >> .git/config) 2>/dev/null && echo WROTE || echo DENIED'], ws);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${member}\nDENIED\n`, 'ran in the warm member, with .git/config read-only');
    assert.match(readFileSync(guardLog, 'utf8'), new RegExp(`pool: ${member} taken by pid`));
    assert.equal(spawnSync('stat', ['-c', '%u', path.join(ws, 'made')], { encoding: 'utf8' }).stdout.trim(), String(process.getuid!()), 'files keep the user\'s ownership');
    // The guard deletes the used one (never back to the pool) and makes a new one.
    await until('the used member to be gone', async () => ((await ours()).some((i) => i.config['volatile.uuid'] === m!.config['volatile.uuid']) ? undefined : true), 60_000);
    const [again] = await idleMembers(1);
    assert.ok(again, 'the pool refilled');
  });

  test('coi shell --background takes a member; coi list shows it by workspace and slot; it is fenced in the sandbox\'s mode', async () => {
    const ws = workspace('shell');
    assert.equal((await coi(['pool', 'warm', '--wait', '120'], ws)).code, 0);
    const [member] = (await ours()).filter((i) => i.config[POOL_LABELS.state] === 'idle' && i.config['user.coi.pool-spec']?.includes(path.basename(ws)));
    const r = await coi(['shell', '--background'], ws);
    assert.equal(r.code, 0, r.stderr);
    const name = r.stdout.trim();
    assert.equal(name, member!.name);
    const list = JSON.parse((await coi(['list', '--format', 'json'], ws)).stdout).sandboxes as Array<{ name: string; workspace: string; slot: number; state: string }>;
    assert.deepEqual(list.filter((s) => s.name === name).map((s) => [s.workspace, s.slot, s.state]), [[ws, 1, 'running']]);
    const status = await guardRequest(GuardNetworkStatus, {});
    assert.equal(status.installed.find((x) => x.container === name)?.mode, 'restricted', 'the guard re-fenced it in the sandbox\'s mode');
    assert.equal((await coi(['kill', name], ws)).code, 0);
  });

  test('a rebuilt image empties the pool: the member of the old image goes, the next is of the new one', async () => {
    const ws = workspace('rebuild');
    assert.equal((await coi(['pool', 'warm', '--wait', '120'], ws)).code, 0);
    const spec = (i: { config: Record<string, string> }) => i.config['user.coi.pool-spec']?.includes(path.basename(ws));
    const [old] = (await ours()).filter((i) => spec(i) && i.config[POOL_LABELS.state] === 'idle');
    const oldFp = old!.config[POOL_LABELS.fingerprint];
    const next = await c.imageAlias('coi');
    assert.ok(next && next !== oldFp, 'the agent image is another image');
    await c.run('PUT', c.url(`/1.0/images/aliases/${IMAGE}`), { target: next, description: 'pool test, rebuilt' });
    // By identity: the refill may give the next member the same name within the poll's 250 ms.
    const uuid = old!.config['volatile.uuid'];
    assert.ok(uuid);
    await until('the outdated member to be deleted', async () => ((await ours()).some((i) => i.config['volatile.uuid'] === uuid) ? undefined : true), 60_000);
    // The alias change sends several events, each a sweep: one delete, not one per sweep racing the others.
    const log = readFileSync(guardLog, 'utf8');
    assert.doesNotMatch(log, new RegExp(`could not delete ${old!.name}`));
    assert.equal(log.split(`pool: deleted ${old!.name}:`).length - 1, 1, 'deleted once');
    const r = await coi(['run', 'command -v claude >/dev/null && echo new-image'], ws);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'new-image\n', 'the command ran on the rebuilt image');
    const fresh = await until('a member of the new image', async () => (await ours()).find((i) => spec(i) && i.config[POOL_LABELS.state] === 'idle'));
    assert.equal(fresh.config[POOL_LABELS.fingerprint], next, 'refilled from the new image');
    await c.run('PUT', c.url(`/1.0/images/aliases/${IMAGE}`), { target: oldFp, description: 'pool test' });
  });

  test('at the host\'s cap (COI_POOL_MAX), the workspace used now gets its member: the least recently used one\'s makes room', async () => {
    const untaken = async () => (await ours()).filter((i) => i.config[POOL_LABELS.state] !== 'taken');
    const ofWs = (i: { config: Record<string, string> }, ws: string) => i.config['user.coi.pool-spec']?.includes(`"workspace":"${ws}"`);
    const used = [workspace('lru-1'), workspace('lru-2'), workspace('lru-3')];
    for (const ws of used) assert.equal((await coi(['pool', 'warm', '--wait', '120'], ws)).code, 0);
    await until('the cap to be reached by these three', async () => ((await untaken()).length === 3 ? true : undefined), 60_000);
    assert.deepEqual((await untaken()).map((i) => used.findIndex((ws) => ofWs(i, ws))).sort(), [0, 1, 2], 'the three most recently used workspaces hold the three places');

    const now = workspace('lru-now');
    const warm = await coi(['pool', 'warm', '--wait', '120'], now);
    assert.equal(warm.code, 0, `the member came within the wait: ${warm.stderr}`);
    const after = await untaken();
    assert.ok(after.length <= 3, `never above the cap: ${after.map((i) => i.name).join(', ')}`);
    assert.ok(after.some((i) => ofWs(i, now) && i.config[POOL_LABELS.state] === 'idle'), 'the workspace used now has its warm member');
    assert.ok(!after.some((i) => ofWs(i, used[0]!)), 'the least recently used workspace gave its place');
    assert.match(readFileSync(guardLog, 'utf8'), /pool: deleted \S+: room for a workspace used more recently/);
    // The one that gave way does not take it back: a refill never pushes out a more recent workspace.
    await sleep(3_000);
    assert.ok((await untaken()).some((i) => ofWs(i, now)), 'still there');
  });

  test('coi clean empties the pool and the guard stops refilling it', async () => {
    assert.ok((await ours()).some((i) => i.config[POOL_LABELS.state] === 'idle' || i.config[POOL_LABELS.state] === 'filling'), 'there is something to clean');
    const r = await coi(['clean'], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /warm pool member/);
    await sleep(3_000);
    assert.deepEqual(await ours(), []);
    const s = await guardRequest(GuardPoolStatus, {});
    assert.deepEqual(s.pools, []);
  });

  test('killing the guard while it fills leaves only labelled members, and coi clean removes them', async () => {
    const ws = workspace('kill');
    assert.equal((await coi(['pool', 'warm'], ws)).code, 0);
    await until('a member being filled', async () => ((await ours()).some((i) => i.config[POOL_LABELS.state] === 'filling') ? true : undefined), 30_000);
    guard!.kill('SIGKILL');
    await new Promise((r) => guard!.once('exit', r));
    await sleep(2_000);
    const left = await ours();
    assert.ok(left.length > 0, 'the interrupted member is there');
    for (const i of left) assert.ok(i.config[POOL_LABELS.key] && i.config['user.coi.managed'] === 'true', `${i.name} carries the pool's labels`);
    const r = await coi(['clean'], ws);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /deleted .* \(warm pool member whose guard died while filling it\)/);
    assert.deepEqual(await ours(), [], 'nothing of the pool is left');
  });
});
