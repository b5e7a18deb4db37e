/**
 * A JSON-RPC connection over any pair of streams (stdio, a unix socket, paired
 * in-memory streams in tests), reading through the bounded reader so that
 * hostile input is answered and never crashes the process.
 */
import type { Readable, Writable } from 'node:stream';
import { createMessageConnection, Logger, MessageConnection, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { BoundedMessageReader } from '../protocol/framing';
import type { Log } from '../log';

export interface ConnectionOptions {
  log: Log;
  maxMessageBytes?: number;
}

export function createConnection(input: Readable, output: Writable, opts: ConnectionOptions): MessageConnection {
  const writer = new StreamMessageWriter(output, 'utf-8');
  const reader = new BoundedMessageReader(input, {
    ...(opts.maxMessageBytes ? { maxMessageBytes: opts.maxMessageBytes } : {}),
    reject: (answer) => {
      opts.log.debug(`rejected input: ${answer.error.message}`);
      writer.write(answer as never).catch(() => undefined);
    },
  });
  const logger: Logger = {
    error: (m) => opts.log.error(m),
    warn: (m) => opts.log.warn(m),
    info: (m) => opts.log.debug(m),
    log: (m) => opts.log.debug(m),
  };
  return createMessageConnection(reader, writer, logger);
}
