import { strict as assert } from 'node:assert';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { z } from 'zod';
import { CoiError, ErrorCodes } from '../../helper/errors';
import { silentLog } from '../../helper/log';
import { call, request, Router } from '../../helper/protocol/rpc';
import { createConnection } from '../../helper/rpc/connection';
import { collect, frame, pair } from './support';

const Greet = request('test/greet', () => z.object({ name: z.string().max(20), times: z.number().int().min(1).default(1) }).strict(), () => z.object({ text: z.string() }));
const Fail = request('test/fail', () => z.object({}).strict(), () => z.object({}));
const Liar = request('test/liar', () => z.object({}).strict(), () => z.object({ count: z.number() }));

function router(): Router {
  return new Router(silentLog)
    .onRequest(Greet, ({ name, times }) => ({ text: `hi ${name}`.repeat(times) }))
    .onRequest(Fail, () => {
      throw new CoiError(ErrorCodes.GUARD_UNREACHABLE, 'the guard is down', { remedy: { title: 'Start it', shell: 'sudo coi guard start' } });
    })
    .onRequest(Liar, () => ({ count: 'not a number' }) as unknown as { count: number });
}

const p = pair(router());
after(() => p.dispose());

test('a typed request round-trips with defaults applied', async () => {
  assert.deepEqual(await call(p.client, Greet, { name: 'ada', times: 2 }), { text: 'hi adahi ada' });
  assert.deepEqual(await p.client.sendRequest('test/greet', { name: 'bob' }), { text: 'hi bob' });
});

test('an unknown method is MethodNotFound', async () => {
  await assert.rejects(p.client.sendRequest('nope/nothing', {}), (e: { code: number; message: string }) => e.code === -32601 && /unknown method nope\/nothing/.test(e.message));
});

test('bad params are InvalidParams naming each offending field', async () => {
  await assert.rejects(p.client.sendRequest('test/greet', { name: 5, times: 'x', extra: 1 }), (e: { code: number; message: string }) => {
    assert.equal(e.code, -32602);
    assert.match(e.message, /name: /);
    assert.match(e.message, /times: /);
    assert.match(e.message, /extra/);
    return true;
  });
  await assert.rejects(p.client.sendRequest('test/greet', ['positional']), (e: { code: number }) => e.code === -32602);
  await assert.rejects(p.client.sendRequest('test/greet', { name: 'x'.repeat(10_000) }), (e: { code: number }) => e.code === -32602);
});

test('a domain error arrives as a CoiError with its code and remedy', async () => {
  await assert.rejects(call(p.client, Fail, {}), (e: unknown) => {
    assert.ok(e instanceof CoiError);
    assert.equal(e.code, ErrorCodes.GUARD_UNREACHABLE);
    assert.equal(e.remedy?.shell, 'sudo coi guard start');
    return true;
  });
});

test('an answer that does not match its schema is refused by the caller', async () => {
  await assert.rejects(call(p.client, Liar, {}), /malformed answer to test\/liar: count/);
});

test('hostile frames each get an error and the connection keeps serving', async () => {
  const serverIn = new PassThrough();
  const serverOut = new PassThrough();
  const conn = createConnection(serverIn, serverOut, { log: silentLog, maxMessageBytes: 64 * 1024 });
  router().attach(conn);
  conn.listen();
  const out = collect(serverOut);
  const hostile: Buffer[] = [
    frame('{not json'),
    frame('"just a string"'),
    frame('[1,2,3]'),
    frame('{"jsonrpc":"2.0","id":7,"method":5}'),
    frame('{"jsonrpc":"1.0","id":8,"method":"test/greet"}'),
    frame('{"jsonrpc":"2.0","id":{"x":1},"method":"test/greet"}'),
    frame(Buffer.from([0xff, 0xfe, 0x00, 0x01])),
    Buffer.from('Content-Type: nothing\r\n\r\n'),
    frame(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'test/greet', params: { name: 'x'.repeat(100 * 1024) } })),
  ];
  for (const h of hostile) serverIn.write(h);
  const answers = (await out.next(hostile.length)) as { id: unknown; error?: { code: number; message: string } }[];
  assert.equal(answers.length, hostile.length);
  for (const a of answers) assert.ok(a.error, `every hostile frame is answered with an error: ${JSON.stringify(a)}`);
  assert.equal(answers[0]!.error!.code, -32700);
  assert.deepEqual(answers.find((a) => a.id === 7)?.error?.code, -32600, 'a bad method with a usable id is answered to that id');
  assert.ok(answers.some((a) => /exceeds the limit/.test(a.error!.message)), 'oversized frames are refused, not buffered');
  serverIn.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'test/greet', params: { name: 'still' } })));
  const [ok] = (await out.next(1)) as { id: number; result: unknown }[];
  assert.deepEqual(ok, { jsonrpc: '2.0', id: 10, result: { text: 'hi still' } });
  conn.dispose();
});
