import { strict as assert } from 'node:assert';
import * as dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  allowedIps,
  hostsEntries,
  HOSTS_BEGIN,
  HOSTS_END,
  mergeHosts,
  NameState,
  nextNameState,
  nodeResolve4,
  readCache,
  refreshDelaySec,
  staleCacheFiles,
  writeCache,
} from '../../../../helper/guard/network/allowlist';

const t = { floorSec: 60, graceSec: 600 };
const T0 = 1_700_000_000_000;

test('answers: TTLs are floored, addresses that left the answer stay allowed until TTL + grace, then go', () => {
  let s = nextNameState(undefined, { answers: [{ address: '198.51.100.2', ttl: 5 }] }, T0, t);
  assert.deepEqual(s, { current: [{ ip: '198.51.100.2', ttl: 60, seenAt: T0 }], previous: [] });
  s = nextNameState(s, { answers: [{ address: '198.51.100.3', ttl: 300 }] }, T0 + 60_000, t);
  assert.deepEqual(s.current.map((k) => k.ip), ['198.51.100.3']);
  assert.deepEqual(s.previous.map((k) => k.ip), ['198.51.100.2']);
  const names = new Map([['x.test', s]]);
  assert.deepEqual(allowedIps(names, t), [
    { ip: '198.51.100.3', expiresAt: T0 + 60_000 + 900_000 },
    { ip: '198.51.100.2', expiresAt: T0 + 660_000 },
  ]);
  // Past the old address's TTL + grace it is dropped from state altogether.
  s = nextNameState(s, { answers: [{ address: '198.51.100.3', ttl: 300 }] }, T0 + 661_000, t);
  assert.deepEqual(s.previous, []);
});

test('a failed resolution keeps the last known addresses in force for one floor period and says why', () => {
  const ok = nextNameState(undefined, { answers: [{ address: '198.51.100.2', ttl: 3600 }] }, T0, t);
  const failed = nextNameState(ok, { error: 'ETIMEOUT' }, T0 + 10_000_000, t);
  assert.deepEqual(failed, { current: [{ ip: '198.51.100.2', ttl: 60, seenAt: T0 + 10_000_000 }], previous: [], error: 'ETIMEOUT' });
  assert.deepEqual(nextNameState(undefined, { error: 'ENOTFOUND' }, T0, t), { current: [], previous: [], error: 'ENOTFOUND' });
});

test('the next refresh: the least TTL, at most refresh_interval_minutes, the floor after a failure', () => {
  const a = nextNameState(undefined, { answers: [{ address: '1.2.3.4', ttl: 120 }] }, T0, t);
  const b = nextNameState(undefined, { answers: [{ address: '5.6.7.8', ttl: 7200 }] }, T0, t);
  assert.equal(refreshDelaySec(new Map([['a', a], ['b', b]]), 30, t), 120);
  assert.equal(refreshDelaySec(new Map([['b', b]]), 30, t), 1800);
  assert.equal(refreshDelaySec(new Map([['b', b], ['c', nextNameState(undefined, { error: 'x' }, T0, t)]]), 30, t), 60);
});

test('/etc/hosts: our block is replaced in place, everything else kept; no entries, no block', () => {
  const base = '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n';
  const names = new Map<string, NameState>([
    ['b.test', { current: [{ ip: '198.51.100.3', ttl: 60, seenAt: 0 }], previous: [{ ip: '10.0.0.1', ttl: 60, seenAt: 0 }] }],
    ['a.test', { current: [{ ip: '198.51.100.2', ttl: 60, seenAt: 0 }], previous: [] }],
  ]);
  const once = mergeHosts(base, hostsEntries(names));
  assert.equal(once, `${base}${HOSTS_BEGIN}\n198.51.100.2\ta.test\n198.51.100.3\tb.test\n${HOSTS_END}\n`);
  assert.equal(mergeHosts(once, hostsEntries(names)), once, 'idempotent');
  const edited = once.replace('localhost ip6-localhost', 'localhost ip6-localhost\n10.1.1.1 mine');
  assert.equal(mergeHosts(edited, [{ ip: '198.51.100.9', name: 'a.test' }]), `${base}10.1.1.1 mine\n${HOSTS_BEGIN}\n198.51.100.9\ta.test\n${HOSTS_END}\n`);
  assert.equal(mergeHosts(once, []), base);
});

test('the cache survives a restart as "last known good", drops garbage, and stale files are found', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'coi-alcache-'));
  try {
    const s = nextNameState(undefined, { answers: [{ address: '198.51.100.2', ttl: 300 }] }, T0, t);
    await writeCache(dir, 'coi-abc-1', new Map([['a.test', s]]), T0);
    const back = await readCache(dir, 'coi-abc-1', T0 + 86_400_000, t);
    assert.deepEqual(back?.get('a.test'), { current: [{ ip: '198.51.100.2', ttl: 60, seenAt: T0 + 86_400_000 }], previous: [] });
    assert.equal(await readCache(dir, 'coi-other-1', T0, t), undefined);
    const doc = JSON.parse(readFileSync(path.join(dir, 'coi-abc-1.json'), 'utf8'));
    doc.names['a.test'].current.push({ ip: 'not-an-ip', ttl: 1, seenAt: 1 });
    writeFileSync(path.join(dir, 'coi-abc-1.json'), JSON.stringify(doc));
    assert.deepEqual((await readCache(dir, 'coi-abc-1', T0, t))?.get('a.test')?.current.map((k) => k.ip), ['198.51.100.2']);
    writeFileSync(path.join(dir, 'coi-abc-1.json'), '{ torn');
    assert.equal(await readCache(dir, 'coi-abc-1', T0, t), undefined);
    writeFileSync(path.join(dir, 'coi-gone-2.json'), '{}');
    assert.deepEqual((await staleCacheFiles(dir, ['coi-abc-1'])).map((f) => path.basename(f)), ['coi-gone-2.json']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nodeResolve4 asks only the server it is given, and returns the TTLs', async () => {
  // A one-record DNS server on loopback.
  const srv = dgram.createSocket('udp4');
  const asked: string[] = [];
  srv.on('message', (q, r) => {
    let i = 12;
    const labels: string[] = [];
    while (q[i] !== 0) {
      labels.push(q.subarray(i + 1, i + 1 + q[i]!).toString());
      i += q[i]! + 1;
    }
    asked.push(labels.join('.'));
    const head = Buffer.alloc(12);
    q.copy(head, 0, 0, 2);
    head.writeUInt16BE(0x8180, 2);
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(1, 6);
    const ans = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 42, 0, 4, 198, 51, 100, 7]);
    srv.send(Buffer.concat([head, q.subarray(12, i + 5), ans]), r.port, r.address);
  });
  await new Promise<void>((r) => srv.bind(0, '127.0.0.1', r));
  try {
    const port = (srv.address() as { port: number }).port;
    const answers = await nodeResolve4({ timeoutMs: 1_000, tries: 1 })('allowed.test', [`127.0.0.1:${port}`]);
    assert.deepEqual(answers, [{ address: '198.51.100.7', ttl: 42 }]);
    assert.deepEqual(asked, ['allowed.test']);
  } finally {
    srv.close();
  }
});
