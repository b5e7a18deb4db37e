/**
 * A minimal leveled logger writing one line per message to a stream (stderr by
 * default: stdout belongs to JSON-RPC in `--stdio` mode and to command output
 * in the CLI). The extension forwards the helper's stderr to its LogOutputChannel.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Log {
  debug(m: string): void;
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
}

export function createLog(name: string, opts: { level?: Level; write?: (line: string) => void } = {}): Log {
  const min = order[opts.level ?? ((process.env.COI_LOG_LEVEL as Level | undefined) ?? 'info')] ?? order.info;
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const emit = (level: Level, m: string) => {
    if (order[level] < min) return;
    write(`${new Date().toISOString()} ${level.padEnd(5)} [${name}] ${m}\n`);
  };
  return {
    debug: (m) => emit('debug', m),
    info: (m) => emit('info', m),
    warn: (m) => emit('warn', m),
    error: (m) => emit('error', m),
  };
}

export const silentLog: Log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
