/**
 * A build's progress: named steps and the log lines of each, written to the
 * build's log file and handed to whoever watches (the terminal, JSON-RPC
 * clients). A failure names the step it happened in and points at the log.
 */
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes, toCoiError } from '../errors';

export interface BuildProgressEvent {
  buildId: string;
  /** The step's short name, e.g. "packages". */
  step: string;
  /** Set when a step starts: what it does, for people. */
  title?: string;
  /** A log line of the current step. */
  line?: string;
}

export class BuildReporter {
  private fd: number | undefined;
  private current = 'start';

  constructor(
    readonly buildId: string,
    readonly logPath: string,
    private readonly emit: (e: BuildProgressEvent) => void,
  ) {
    mkdirSync(path.dirname(logPath), { recursive: true, mode: 0o700 });
    this.fd = openSync(logPath, 'a', 0o600);
  }

  get step(): string {
    return this.current;
  }

  begin(step: string, title: string): void {
    this.current = step;
    this.write(`==> [${step}] ${title}`);
    this.emit({ buildId: this.buildId, step, title });
  }

  line(text: string): void {
    // Terminal control sequences (apt's progress bars) have no place in a log.
    // eslint-disable-next-line no-control-regex
    const clean = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').trimEnd();
    if (!clean) return;
    this.write(clean);
    this.emit({ buildId: this.buildId, step: this.current, line: clean });
  }

  /** Wraps an error so that it names the step it failed in and the log that keeps its output. */
  fail(e: unknown): CoiError {
    const err = toCoiError(e);
    this.write(`!!! [${this.current}] failed: ${err.message}`);
    if (err.code === ErrorCodes.CANCELLED) return new CoiError(ErrorCodes.CANCELLED, `build cancelled during step "${this.current}"`, { details: { step: this.current, log: this.logPath } });
    return new CoiError(err.code, `build step "${this.current}" failed: ${err.message}\n  log: ${this.logPath}`, {
      ...(err.remedy ? { remedy: err.remedy } : {}),
      details: { ...(err.details ?? {}), step: this.current, log: this.logPath },
    });
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private write(line: string): void {
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, `${new Date().toISOString()} ${line}\n`);
    } catch {
      // a full disk must not hide the build's own error
    }
  }
}

/** A line splitter for streamed output: complete lines only, the rest on flush. */
export function lineSplitter(onLine: (l: string) => void): { push(chunk: Buffer | string): void; flush(): void } {
  let rest = '';
  return {
    push(chunk) {
      const parts = (rest + chunk.toString()).split(/\r?\n|\r/);
      rest = parts.pop() ?? '';
      for (const p of parts) onLine(p);
    },
    flush() {
      if (rest) onLine(rest);
      rest = '';
    },
  };
}

/** Keeps the newest `keep` build logs. */
export function pruneLogs(dir: string, keep = 20): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => /^build-.*\.log$/.test(n)).sort();
  } catch {
    return;
  }
  for (const n of names.slice(0, Math.max(0, names.length - keep))) rmSync(path.join(dir, n), { force: true });
}
