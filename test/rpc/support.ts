import { PassThrough } from 'node:stream';
import type { MessageConnection } from 'vscode-jsonrpc';
import { silentLog } from '../../helper/log';
import { Router } from '../../helper/protocol/rpc';
import { createConnection } from '../../helper/rpc/connection';

/** A server and a client connection joined by in-memory streams: the real protocol stack, no process. */
export function pair(router: Router): { client: MessageConnection; server: MessageConnection; serverIn: PassThrough; clientIn: PassThrough; dispose(): void } {
  const serverIn = new PassThrough();
  const clientIn = new PassThrough();
  const server = createConnection(serverIn, clientIn, { log: silentLog, maxMessageBytes: 64 * 1024 });
  const client = createConnection(clientIn, serverIn, { log: silentLog });
  router.attach(server);
  server.listen();
  client.listen();
  return {
    client,
    server,
    serverIn,
    clientIn,
    dispose() {
      client.dispose();
      server.dispose();
    },
  };
}

export function frame(body: string | Buffer): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`, 'ascii'), b]);
}

/** Collects every framed message written to a stream. */
export function collect(stream: PassThrough): { messages: unknown[]; next(n: number, timeoutMs?: number): Promise<unknown[]> } {
  const messages: unknown[] = [];
  let buf = Buffer.alloc(0);
  const waiters: (() => void)[] = [];
  stream.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) break;
      const len = Number(/Content-Length: (\d+)/i.exec(buf.subarray(0, end).toString())?.[1]);
      if (buf.length < end + 4 + len) break;
      messages.push(JSON.parse(buf.subarray(end + 4, end + 4 + len).toString()));
      buf = buf.subarray(end + 4 + len);
    }
    waiters.splice(0).forEach((w) => w());
  });
  return {
    messages,
    async next(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} messages, got ${messages.length}: ${JSON.stringify(messages).slice(0, 500)}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return messages.splice(0, n);
    },
  };
}
