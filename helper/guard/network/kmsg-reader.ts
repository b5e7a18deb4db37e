/**
 * Follows /dev/kmsg for the log lines of our nft rules. There is no journald
 * here, and nft's `log` lands in the kernel ring buffer, which root reads
 * record by record from /dev/kmsg.
 *
 * The file is opened non-blocking and read every `intervalMs` until it has
 * nothing new (EAGAIN): a blocking read would hold one of libuv's few pool
 * threads forever. Records already in the buffer when it starts are skipped
 * (they were published by whoever ran before); records the kernel overwrote
 * before we read them (EPIPE) are counted as lost.
 */
import * as fs from 'node:fs';
import type { Log } from '../../log';
import { PacketEvent, parsePacketLogLine } from './kmsg';

export interface KmsgReaderOptions {
  path?: string;
  intervalMs?: number;
  log: Log;
  onEvent: (e: PacketEvent) => void;
}

export class KmsgReader {
  private fd: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly buf = Buffer.alloc(16 * 1024);
  lost = 0;

  constructor(private readonly opts: KmsgReaderOptions) {}

  /** Opens the log; false (and a warning) when it cannot be read, e.g. without root. */
  start(): boolean {
    const p = this.opts.path ?? '/dev/kmsg';
    try {
      this.fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (e) {
      this.opts.log.warn(`cannot read ${p} (${(e as Error).message}): dropped connections will not be reported`);
      return false;
    }
    this.drain(false);
    this.timer = setInterval(() => this.drain(true), this.opts.intervalMs ?? 100);
    this.timer.unref();
    return true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /** Reads every record available now; publishes them when `publish`. */
  drain(publish: boolean): void {
    if (this.fd === undefined) return;
    for (let i = 0; i < 10_000; i++) {
      let n: number;
      try {
        n = fs.readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return;
        if (code === 'EPIPE') {
          this.lost++;
          continue;
        }
        this.opts.log.warn(`reading the kernel log failed: ${(e as Error).message}`);
        return;
      }
      if (n <= 0) return;
      if (!publish) continue;
      const ev = parsePacketLogLine(this.buf.toString('utf8', 0, n));
      if (ev) {
        try {
          this.opts.onEvent(ev);
        } catch (err) {
          this.opts.log.warn(`a packet event handler failed: ${(err as Error).message}`);
        }
      }
    }
  }
}
