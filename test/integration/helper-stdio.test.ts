import { strict as assert } from 'node:assert';
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { HelperInfo } from '../../helper/protocol/methods';
import { HELPER, requireIncus } from './support';

let child: ChildProcessWithoutNullStreams;
const answers: { id: unknown; result?: unknown; error?: { code: number; message: string } }[] = [];
let buffer = Buffer.alloc(0);

function frame(body: string | Buffer): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`), b]);
}

async function waitAnswers(n: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (answers.length < n) {
    if (Date.now() > deadline) throw new Error(`expected ${n} answers, got ${answers.length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  await requireIncus();
  // A prefix of its own, so other sandboxes on a shared machine do not reach it as notifications.
  child = spawn(process.execPath, [HELPER, '--stdio'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, COI_CONTAINER_PREFIX: 'coi-hs-' } });
  child.stderr.resume();
  child.stdout.on('data', (c: Buffer) => {
    buffer = Buffer.concat([buffer, c]);
    for (;;) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const len = Number(/Content-Length: (\d+)/i.exec(buffer.subarray(0, end).toString())?.[1]);
      if (buffer.length < end + 4 + len) return;
      const message = JSON.parse(buffer.subarray(end + 4, end + 4 + len).toString()) as { id?: unknown; method?: string };
      // Notifications (no id) are the helper's own news, not answers to our frames.
      if ('id' in message || !message.method) answers.push(message as (typeof answers)[number]);
      buffer = buffer.subarray(end + 4 + len);
    }
  });
});
after(() => child?.kill());

test('helper/info over JSON-RPC on stdio reports the Incus server version', async () => {
  const incusVersion = (await (await requireIncus()).server()).environment?.server_version;
  child.stdin.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 'info-1', method: HelperInfo.method })));
  await waitAnswers(1);
  const a = answers.shift()!;
  assert.equal(a.id, 'info-1');
  const info = HelperInfo.result.parse(a.result);
  assert.equal(info.incus.reachable, true);
  assert.equal(info.incus.reachable && info.incus.serverVersion, incusVersion);
});

/** 1,000 hostile messages of many kinds, deterministic so a failure can be replayed. */
function hostileMessages(): Buffer[] {
  const out: Buffer[] = [];
  const huge = 'A'.repeat(512 * 1024);
  const kinds: ((i: number) => Buffer)[] = [
    (i) => frame(`{"jsonrpc":"2.0","id":${i},"method":"helper/info"`), // truncated JSON
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'no/such/method' })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'helper/info', params: { unexpected: huge.slice(0, 100 + i) } })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'helper/info', params: [1, 2, 3] })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 42 })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: `x${huge}` })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'helper/info', params: 'string params' })),
    (i) => frame(JSON.stringify({ jsonrpc: '2.0', id: i, method: '\u001b[31m<img src=x onerror=alert(1)>' })),
    () => frame(Buffer.from([0xc3, 0x28, 0xa0, 0xa1])), // invalid UTF-8
    (i) => frame(JSON.stringify({ id: i, method: 'helper/info' })), // no jsonrpc member
  ];
  for (let i = 0; i < 1000; i++) out.push(kinds[i % kinds.length]!(i));
  return out;
}

test('1,000 malformed or hostile messages each get an error, and the helper stays alive and useful', async () => {
  const messages = hostileMessages();
  for (const m of messages) child.stdin.write(m);
  await waitAnswers(1000, 60_000);
  const got = answers.splice(0, 1000);
  const withoutError = got.filter((a) => !a.error);
  assert.equal(withoutError.length, 0, `every hostile message is answered with an error: ${JSON.stringify(withoutError.slice(0, 3))}`);
  const codes = new Set(got.map((a) => a.error!.code));
  for (const c of [-32700, -32600, -32601, -32602]) assert.ok(codes.has(c), `saw error code ${c}`);
  assert.equal(child.exitCode, null, 'the helper is still running');
  child.stdin.write(frame(JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'helper/info' })));
  await waitAnswers(1);
  const a = answers.shift()!;
  assert.equal(a.id, 'after');
  assert.ok(a.result, 'helper/info still answers');
});
