/**
 * The guard's network controller against an Incus and an nft that are plain
 * objects: which instances it fences, what it refuses to secure, how applies
 * are serialised and coalesced, and the allowlist's resolve → apply → /etc/hosts
 * cycle. The same code against the real kernel and Incus: test/integration/network.test.ts.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { CoiError, ErrorCodes } from '../../../../helper/errors';
import { DnsAnswer, HOSTS_BEGIN, HOSTS_END } from '../../../../helper/guard/network/allowlist';
import { NetworkController } from '../../../../helper/guard/network/controller';
import type { ExecResult, NftExec } from '../../../../helper/guard/network/nft';
import type { IncusClient } from '../../../../helper/incus/client';
import type { InstanceFull } from '../../../../helper/incus/types';
import { silentLog } from '../../../../helper/log';
import { encodeNetworkLabel, NetworkLabel } from '../../../../helper/sandbox/network-label';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const restricted: NetworkLabel = { v: 1, mode: 'restricted', allowLocal: false, cidrs: [], domains: [], ports: [], refreshMin: 30 };

function inst(name: string, label: NetworkLabel | undefined = restricted, extra: Record<string, string> = {}): InstanceFull {
  return {
    name,
    status: 'Stopped',
    status_code: 102,
    type: 'container',
    created_at: '',
    config: { 'user.coi.managed': 'true', ...(label ? { 'user.coi.network': encodeNetworkLabel(label) } : {}), ...extra },
    devices: {},
    expanded_devices: { eth0: { type: 'nic', network: 'coibr0', host_name: `v${name}`.slice(0, 15) } },
    profiles: ['default'],
  };
}

function world(timing = { floorSec: 1, graceSec: 1 }) {
  const instances = new Map<string, InstanceFull>();
  const files = new Map<string, string>();
  const scripts: string[] = [];
  const pushes: Array<{ file: string; content: string; applied: string }> = [];
  let lastApplied = '';
  let nftDelayMs = 0;
  let nftFails = false;
  const answers = new Map<string, DnsAnswer[] | Error>();
  const asked: Array<{ name: string; servers: readonly string[] | undefined }> = [];
  const incus = {
    url: (p: string) => p,
    listInstances: async () => [...instances.values()],
    getInstance: async (name: string) => {
      const i = instances.get(name);
      if (!i) throw new CoiError(ErrorCodes.NOT_FOUND, `no ${name}`);
      return i;
    },
    get: async (p: string) => (p === '/1.0/networks/coibr0' ? { config: { 'ipv4.address': '10.213.0.1/24' } } : {}),
    pullFile: async (name: string, p: string) => ({ type: 'file' as const, content: Buffer.from(files.get(`${name}:${p}`) ?? '127.0.0.1\tlocalhost\n'), mode: 0o644, uid: 0, gid: 0 }),
    pushFile: async (name: string, p: string, content: Buffer) => {
      files.set(`${name}:${p}`, content.toString());
      // What the kernel had when this file landed: the last script nft applied successfully.
      pushes.push({ file: `${name}:${p}`, content: content.toString(), applied: lastApplied });
    },
  } as unknown as IncusClient;
  const nft: NftExec = async (args): Promise<ExecResult> => {
    if (nftDelayMs && args[0] === '-f') await new Promise((r) => setTimeout(r, nftDelayMs));
    if (args[0] === '-f') scripts.push(readFileSync(args[1]!, 'utf8'));
    if (args[0] === '-j') return { code: 0, signal: null, stdout: '{"nftables": []}', stderr: '' };
    if (nftFails) return { code: 1, signal: null, stdout: '', stderr: 'Error: boom' };
    if (args[0] === '-f') lastApplied = scripts[scripts.length - 1]!;
    return { code: 0, signal: null, stdout: '', stderr: '' };
  };
  const dir = mkdtempSync(path.join(tmpdir(), 'coi-netctl-'));
  dirs.push(dir);
  const ctl = new NetworkController({
    incus,
    log: silentLog,
    scope: '',
    stateDir: path.join(dir, 'state'),
    cacheDir: path.join(dir, 'cache'),
    nft,
    kmsgPath: null,
    resolvers: ['127.0.0.1:5399'],
    resolve4: async (name, servers) => {
      asked.push({ name, servers });
      const a = answers.get(name);
      if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      if (a instanceof Error) throw a;
      return a;
    },
    timing,
  });
  return {
    ctl,
    instances,
    files,
    scripts,
    pushes,
    answers,
    asked,
    dir,
    setNftDelay: (ms: number) => (nftDelayMs = ms),
    setNftFails: (f: boolean) => (nftFails = f),
  };
}

test('secure fences a managed sandbox and answers once the apply that includes it is done', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.instances.set('other', { ...inst('other'), config: {} });
  const r = await w.ctl.secure('coi-a-1');
  assert.deepEqual(r, { name: 'coi-a-1', mode: 'restricted', hostIface: 'vcoi-a-1', resolved: [], warnings: [] });
  const last = w.scripts[w.scripts.length - 1]!;
  assert.match(last, /chain in_coi-a-1 \{/);
  assert.match(last, /ip daddr 10\.213\.0\.1 meta l4proto \{ tcp, udp \} th dport 53 accept/);
  assert.doesNotMatch(last, /other/, 'instances that are not ours get no rules');
  w.ctl.stop();
});

test('secure refuses what it cannot or may not fence, naming why', async () => {
  const w = world();
  w.instances.set('plain', { ...inst('plain'), config: {} });
  w.instances.set('theirs', inst('theirs', restricted, { 'user.coi.guard-scope': 'tx9' }));
  w.instances.set('garbled', { ...inst('garbled'), config: { 'user.coi.managed': 'true', 'user.coi.network': '{"mode":"open"}' } });
  w.instances.set('nameless', { ...inst('nameless'), expanded_devices: { eth0: { type: 'nic', network: 'coibr0' } } });
  const refused = async (name: string, re: RegExp) => assert.rejects(w.ctl.secure(name), (e: unknown) => e instanceof CoiError && re.test(e.message));
  await refused('missing', /no such instance/);
  await refused('plain', /not a COI sandbox/);
  await refused('theirs', /fenced by the guard of scope "tx9"/);
  await refused('garbled', /user\.coi\.network is invalid.*its network is blocked/);
  await refused('nameless', /no fixed host-side name/);
  // The garbled one is blocked outright meanwhile (a boot block: everything dropped).
  await w.ctl.reconcile('check');
  assert.match(w.scripts[w.scripts.length - 1]!, /chain boot_garbled \{/);
  w.ctl.stop();
});

test('concurrent requests are serialised, and those that arrive during an apply share the next one', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.setNftDelay(50);
  const first = w.ctl.reconcile('one');
  await new Promise((r) => setTimeout(r, 10));
  const rest = await Promise.all([w.ctl.reconcile('two'), w.ctl.reconcile('three'), w.ctl.reconcile('four')]);
  await first;
  assert.equal(w.scripts.length, 2, 'one apply running, one more for everything asked meanwhile');
  assert.equal(rest[0], rest[2]);
  const status = await w.ctl.status();
  assert.deepEqual(
    status.recentApplies.map((a) => [a.ok, a.reasons]),
    [
      [true, ['one']],
      [true, ['two', 'three', 'four']],
    ],
    'each apply names every request it served',
  );
  assert.deepEqual(status.pending, []);
  w.ctl.stop();
});

test('a burst of requests during a long apply is named up to 20 and counted beyond', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.setNftDelay(50);
  const first = w.ctl.reconcile('one');
  await new Promise((r) => setTimeout(r, 10));
  const burst = Array.from({ length: 500 }, (_, i) => w.ctl.reconcile(`event ${i}`));
  const pending = (await w.ctl.status()).pending;
  assert.equal(pending.length, 21);
  assert.equal(pending[20], 'and 480 more');
  await Promise.all([first, ...burst]);
  assert.deepEqual((await w.ctl.status()).recentApplies.map((a) => a.reasons.length), [1, 21]);
  w.ctl.stop();
});

const lifecycle = (action: string, name: string) => ({ type: 'lifecycle', timestamp: new Date().toISOString(), metadata: { action, source: `/1.0/instances/${name}` } });

test('a sandbox deleted while an apply that listed it is still running loses its rules with the next apply', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.instances.set('coi-b-1', inst('coi-b-1'));
  await w.ctl.reconcile('start');
  // coi-c-1 appears and is gone again while the apply its creation started is still in nft: that apply installs
  // its rules after Incus said it was deleted, and before the guard knew it as one of its own.
  w.setNftDelay(100);
  w.instances.set('coi-c-1', inst('coi-c-1'));
  const created = w.ctl.reconcile('instance-created coi-c-1');
  while (w.scripts.length < 1 || !/in_coi-c-1/.test(readFileSync(path.join(w.dir, 'state', 'ruleset.nft'), 'utf8'))) await new Promise((r) => setTimeout(r, 5));
  w.instances.delete('coi-c-1');
  w.ctl.onIncusEvent(lifecycle('instance-deleted', 'coi-c-1'));
  // Someone else's instance deleted meanwhile is not listed by that apply: no apply for it.
  w.ctl.onIncusEvent(lifecycle('instance-deleted', 'not-ours'));
  assert.deepEqual((await w.ctl.status()).pending, ['instance-deleted coi-c-1'], 'the deletion waits for the next apply');
  await created;
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !(await w.ctl.status()).recentApplies.some((a) => a.reasons.includes('instance-deleted coi-c-1'))) await new Promise((r) => setTimeout(r, 20));
  const last = w.scripts[w.scripts.length - 1]!;
  assert.match(last, /in_coi-a-1/);
  assert.doesNotMatch(last, /coi-c-1/, 'nothing of the deleted sandbox is left');
  // Deletions of instances no apply knew, with no apply running, cost nothing.
  const n = w.scripts.length;
  w.ctl.onIncusEvent(lifecycle('instance-deleted', 'not-ours'));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(w.scripts.length, n);
  w.ctl.stop();
});

test('a deletion event that comes after an apply already dropped the sandbox is still served by an apply, once', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.instances.set('coi-b-1', inst('coi-b-1'));
  await w.ctl.reconcile('start');
  w.instances.delete('coi-b-1');
  await w.ctl.reconcile('allowlist refresh of coi-a-1');
  assert.doesNotMatch(w.scripts[w.scripts.length - 1]!, /coi-b-1/);
  const served = async () => (await w.ctl.status()).recentApplies.filter((a) => a.reasons.includes('instance-deleted coi-b-1')).length;
  w.ctl.onIncusEvent(lifecycle('instance-deleted', 'coi-b-1'));
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && (await served()) === 0) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await served(), 1, 'the late deletion event has its apply');
  w.ctl.onIncusEvent(lifecycle('instance-deleted', 'coi-b-1'));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await served(), 1, 'a repeated one does not');
  w.ctl.stop();
});

test('a failed apply is an error to the caller (the launch stops), with nft\'s own words', async () => {
  const w = world();
  w.instances.set('coi-a-1', inst('coi-a-1'));
  w.setNftFails(true);
  await assert.rejects(w.ctl.secure('coi-a-1'), (e: unknown) => e instanceof CoiError && /boom/.test(e.message));
  w.ctl.stop();
});

test('allowlist: names resolved by the guard\'s resolver, allowed with timeouts, written to /etc/hosts, cached, refreshed', async () => {
  const w = world();
  const al: NetworkLabel = { ...restricted, mode: 'allowlist', domains: ['allowed.test', 'gone.test'], cidrs: ['198.51.100.3/32'], refreshMin: 1 };
  w.instances.set('coi-al-1', inst('coi-al-1', al));
  w.answers.set('allowed.test', [{ address: '198.51.100.2', ttl: 1 }]);
  const r = await w.ctl.secure('coi-al-1');
  assert.deepEqual(r.resolved, [
    { name: 'allowed.test', ips: ['198.51.100.2'] },
    { name: 'gone.test', ips: [], error: 'ENOTFOUND' },
  ]);
  assert.match(r.warnings.join('\n'), /gone\.test could not be resolved \(ENOTFOUND\): it is not reachable/);
  assert.deepEqual(w.asked.map((a) => a.servers), [['127.0.0.1:5399'], ['127.0.0.1:5399']], 'only the configured resolver is asked');
  const script = w.scripts[w.scripts.length - 1]!;
  assert.match(script, /elements = \{ 198\.51\.100\.2 timeout 2s \}/);
  assert.match(script, /elements = \{ 198\.51\.100\.3 \}/);
  assert.match(w.files.get('coi-al-1:/etc/hosts')!, /^198\.51\.100\.2\tallowed\.test$/m);
  assert.ok(JSON.parse(readFileSync(path.join(w.dir, 'cache', 'coi-al-1.json'), 'utf8')).names['allowed.test']);
  // The name moves; after its (floored) TTL the guard resolves again, applies, and rewrites /etc/hosts.
  w.answers.set('allowed.test', [{ address: '198.51.100.4', ttl: 1 }]);
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !/198\.51\.100\.4\tallowed\.test/.test(w.files.get('coi-al-1:/etc/hosts') ?? '')) await new Promise((res) => setTimeout(res, 50));
  assert.match(w.files.get('coi-al-1:/etc/hosts')!, /^198\.51\.100\.4\tallowed\.test$/m);
  assert.doesNotMatch(w.files.get('coi-al-1:/etc/hosts')!, /198\.51\.100\.2/);
  assert.match(w.scripts[w.scripts.length - 1]!, /198\.51\.100\.4 timeout/);
  // Deleted: its rules and its cache go with the next apply.
  w.instances.delete('coi-al-1');
  await w.ctl.reconcile('deleted');
  assert.doesNotMatch(w.scripts[w.scripts.length - 1]!, /coi-al-1/);
  assert.throws(() => readFileSync(path.join(w.dir, 'cache', 'coi-al-1.json')));
  w.ctl.stop();
});

test('allowlist: /etc/hosts never names an address before the installed rules allow it, and a failed apply leaves it as it was', async () => {
  // A long grace: the old address stays allowed (by the rules and the bookkeeping) throughout.
  const w = world({ floorSec: 1, graceSec: 60 });
  const al: NetworkLabel = { ...restricted, mode: 'allowlist', domains: ['moving.test'], refreshMin: 1 };
  w.instances.set('coi-mv-1', inst('coi-mv-1', al));
  w.answers.set('moving.test', [{ address: '198.51.100.2', ttl: 1 }]);
  await w.ctl.secure('coi-mv-1');
  // The next answer cannot be applied: the name must not move in /etc/hosts.
  w.setNftFails(true);
  w.answers.set('moving.test', [{ address: '198.51.100.4', ttl: 1 }]);
  const failing = w.scripts.length;
  while (w.scripts.length < failing + 2) await new Promise((res) => setTimeout(res, 50));
  await new Promise((res) => setTimeout(res, 200));
  assert.match(w.files.get('coi-mv-1:/etc/hosts')!, /^198\.51\.100\.2\tmoving\.test$/m, 'the old address stays while the fence has not moved');
  assert.doesNotMatch(w.files.get('coi-mv-1:/etc/hosts')!, /198\.51\.100\.4/);
  w.setNftFails(false);
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && !/198\.51\.100\.4\tmoving\.test/.test(w.files.get('coi-mv-1:/etc/hosts') ?? '')) await new Promise((res) => setTimeout(res, 50));
  // Every write of /etc/hosts landed after an apply that allowed each address it names.
  for (const p of w.pushes.filter((x) => x.file === 'coi-mv-1:/etc/hosts')) {
    for (const m of p.content.matchAll(/^(\d+\.\d+\.\d+\.\d+)\tmoving\.test$/gm)) {
      assert.match(p.applied, new RegExp(`set al_coi-mv-1_dns \\{[^}]*elements = \\{[^}]*${m[1]!.replace(/\./g, '\\.')} timeout`), `${m[1]} was in the rules before /etc/hosts named it`);
    }
  }
  assert.match(w.files.get('coi-mv-1:/etc/hosts')!, /^198\.51\.100\.4\tmoving\.test$/m);
  w.ctl.stop();
});

test('[[network.hosts]]: written into /etc/hosts of a restricted sandbox at secure, and let through by its rules', async () => {
  const w = world();
  w.instances.set('coi-h-1', inst('coi-h-1', { ...restricted, hosts: [{ ip: '10.99.0.2', names: ['db.lan', 'db'], ports: [5432] }], metadata: true }));
  w.files.set('coi-h-1:/etc/hosts', '127.0.0.1\tlocalhost\n10.0.0.9\tmine\n');
  await w.ctl.secure('coi-h-1');
  assert.equal(w.files.get('coi-h-1:/etc/hosts'), `127.0.0.1\tlocalhost\n10.0.0.9\tmine\n${HOSTS_BEGIN}\n10.99.0.2\tdb.lan\n10.99.0.2\tdb\n${HOSTS_END}\n`);
  const script = w.scripts[w.scripts.length - 1]!;
  assert.match(script, /ip daddr 10\.99\.0\.2 meta l4proto \{ tcp, udp \} th dport \{ 5432 \} accept/);
  assert.match(script, /ip daddr 169\.254\.169\.254 accept/);
  w.ctl.stop();
});

test('a pool take applies the rules once: the update the guard made itself is left to the secure that follows it', async () => {
  const w = world();
  w.instances.set('coi-a-1', { ...inst('coi-a-1', { ...restricted, mode: 'allowlist' }), status: 'Running' });
  await w.ctl.secure('coi-a-1');
  const updated = { type: 'lifecycle', timestamp: '2026-11-27T08:00:00Z', metadata: { action: 'instance-updated', source: '/1.0/instances/coi-a-1' } };
  // A reconcile an event starts has begun by the next turn of the loop.
  const nextTurn = () => new Promise((r) => setImmediate(r));
  const applies = async (n: number) => {
    for (let i = 0; i < 500 && w.scripts.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    return w.scripts.length;
  };
  const before = w.scripts.length;
  // The take: hold, update (its event arrives), then secure with the instance as updated.
  w.ctl.holdUpdates('coi-a-1');
  const taken = { ...w.instances.get('coi-a-1')!, config: { ...w.instances.get('coi-a-1')!.config, 'user.coi.network': encodeNetworkLabel({ ...restricted, mode: 'open' }) } };
  w.instances.set('coi-a-1', taken);
  w.ctl.onIncusEvent(updated);
  await nextTurn();
  const r = await w.ctl.secure('coi-a-1', taken);
  assert.equal(r.mode, 'open');
  assert.equal(w.scripts.length, before + 1, 'one apply for the take (an apply for the event would have run before the secure\'s)');
  assert.match(w.scripts[w.scripts.length - 1]!, /key=coi-a-1 iface=vcoi-a-1 mode=open/, 'and it is of the new mode');
  // The hold ended with that apply: a later update is reconciled as usual.
  w.ctl.onIncusEvent(updated);
  assert.equal(await applies(before + 2), before + 2);
  // An update that failed: releasing the hold reconciles, whatever happened meanwhile.
  const release = w.ctl.holdUpdates('coi-a-1');
  w.ctl.onIncusEvent(updated);
  await nextTurn();
  assert.equal(w.scripts.length, before + 2, 'held');
  release();
  assert.equal(await applies(before + 3), before + 3);
  w.ctl.stop();
});

test('a pool take fences with the update it is making: reconciles until it ends list the updated member in its place', async () => {
  const w = world();
  const member = { ...inst('coi-a-1', { ...restricted, mode: 'allowlist' }), status: 'Running' };
  w.instances.set('coi-a-1', member);
  await w.ctl.secure('coi-a-1');
  // Incus still holds the member's labels; the take's update (mode open) is under way.
  const taken = { ...member, config: { ...member.config, 'user.coi.network': encodeNetworkLabel({ ...restricted, mode: 'open' }) } };
  const done = w.ctl.expectUpdate('coi-a-1', taken);
  const r = await w.ctl.secure('coi-a-1', taken);
  assert.equal(r.mode, 'open');
  assert.match(w.scripts[w.scripts.length - 1]!, /key=coi-a-1 iface=vcoi-a-1 mode=open/, 'the rules of the update, not of the listing');
  // Ended without reaching Incus (it failed): the listing is Incus's again.
  done();
  await w.ctl.reconcile('after the update');
  assert.match(w.scripts[w.scripts.length - 1]!, /key=coi-a-1 iface=vcoi-a-1 mode=allowlist/);
  // A stand-in is only for the instance it was made from: another under the same name is listed as it is.
  const other = { ...member, config: { ...member.config, 'volatile.uuid': 'another' } };
  w.instances.set('coi-a-1', other);
  const done2 = w.ctl.expectUpdate('coi-a-1', { ...taken, config: { ...taken.config, 'volatile.uuid': 'first' } });
  await w.ctl.reconcile('a new instance under the name');
  assert.match(w.scripts[w.scripts.length - 1]!, /key=coi-a-1 iface=vcoi-a-1 mode=allowlist/);
  done2();
  w.ctl.stop();
});
