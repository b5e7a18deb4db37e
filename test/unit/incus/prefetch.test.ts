import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { IncusClient } from '../../../helper/incus/client';
import type { Transport, TransportRequest, TransportResponse } from '../../../helper/incus/transport';
import { prefetchLaunch } from '../../../helper/sandbox/manager';

/** Answers every GET with a sync envelope naming the path and how many requests came before it. */
function countingTransport(): Transport & { asked: string[] } {
  const asked: string[] = [];
  return {
    endpoint: 'unix:/test',
    asked,
    async request(req: TransportRequest): Promise<TransportResponse> {
      asked.push(`${req.method} ${req.path}`);
      const metadata = req.path.startsWith('/1.0/instances') ? [{ name: `seen-as-request-${asked.length}`, config: {}, devices: {} }] : { config: {}, n: asked.length };
      return { status: 200, headers: {}, body: Buffer.from(JSON.stringify({ type: 'sync', status_code: 200, metadata })) };
    },
    download: () => Promise.reject(new Error('not here')),
    websocket: () => {
      throw new Error('not here');
    },
  };
}

test('a prefetched GET is answered once to the next get of its path, and asked again after that', async () => {
  const t = countingTransport();
  const incus = new IncusClient(t);
  incus.prefetch('/1.0/profiles/default');
  assert.deepEqual(t.asked, ['GET /1.0/profiles/default'], 'asked at once');
  assert.deepEqual(await incus.get('/1.0/profiles/default'), { config: {}, n: 1 }, 'the prefetched answer');
  assert.deepEqual(await incus.get('/1.0/profiles/default'), { config: {}, n: 2 }, 'a second get asks again');
  assert.equal(t.asked.length, 2);
});

test("a launch's prefetch is what its first look at Incus asks for (the instances as listInstances lists them, the default profile)", async () => {
  const t = countingTransport();
  const incus = new IncusClient(t);
  prefetchLaunch(incus);
  const [list, profile] = await Promise.all([incus.listInstances({ recursion: 1 }), incus.get('/1.0/profiles/default')]);
  assert.equal(t.asked.length, 2, `no request beyond the prefetch: ${t.asked.join(', ')}`);
  assert.equal(list[0]?.name, 'seen-as-request-1');
  assert.deepEqual(profile, { config: {}, n: 2 });
});

test('a prefetch that failed fails its get with the same error, and the next get asks again', async () => {
  const t = countingTransport();
  let fail = true;
  const incus = new IncusClient({
    ...t,
    request: (req) => (fail ? Promise.reject(new Error('incus is down')) : t.request(req)),
  });
  incus.prefetch('/1.0/profiles/default');
  await assert.rejects(incus.get('/1.0/profiles/default'), /incus is down/);
  fail = false;
  assert.deepEqual(await incus.get('/1.0/profiles/default'), { config: {}, n: 1 });
});
