/**
 * The names sandboxes look up, read on the host: the bridge's dnsmasq logs
 * every query (`log-queries=extra`, `log-facility=<file>`, set by `coi
 * setup`), and this follows that file and hands each query to the sandbox it
 * came from. Nothing runs inside the container, where the agent has sudo.
 *
 * Why this feed. dnsmasq is the resolver every sandbox is given (DHCP names
 * the bridge address as DNS server, in NAT and dead-end mode alike; in
 * dead-end mode it answers without forwarding), so it sees each name, and
 * logs it by configuration alone. The other ways were weighed:
 * - an nft rule sending DNS packets to an NFLOG group: the kernel log of our
 *   `log` rules has headers only, and nfnetlink_log needs a netlink socket
 *   Node cannot open without a native module (or ulogd2, one more daemon),
 *   plus a DNS parser of our own for hostile packets;
 * - a forwarder in the guard that sandbox DNS is DNAT-ed to: every sandbox's
 *   DNS would then stop whenever the guard restarts or crashes, and the fence
 *   would grow NAT rules. Here the guard only reads: when it is down, DNS
 *   still works, and on its return it catches up from the end of the log.
 *
 * Attribution, and its limits. A line names the query's source address (and
 * port). The supervisor maps it to a sandbox by the addresses Incus reports
 * for that sandbox's NIC, re-read whenever an address is unknown. Root in a
 * container can change its address: Incus then reports the new one, and the
 * mapping follows. If it takes a neighbour's address, both report it and the
 * queries go to both: the sender is frozen, the neighbour too (a visible,
 * resumable false alarm, never a missed tunnel). If it sends from an address
 * it never configures (a raw socket), the queries belong to no sandbox: they
 * are logged by the guard, no answer reaches the sender, and the kernel's
 * length and rate rules, keyed on the veth, still judge its packets. Closing
 * that gap needs the bridge port to drop forged sources (Incus
 * `security.ipv4_filtering`, which the firewalld backend already requires).
 * Only the bridge's resolver is seen: a restricted sandbox asking 8.8.8.8
 * directly is judged by the kernel rules alone.
 */
import * as fs from 'node:fs';
import type { Log } from '../../log';
import type { DnsQuery } from './detectors/types';
import { parseQueryLine } from './dns-log';

export interface DnsFeedOptions {
  log: Log;
  /** The sandboxes a source address belongs to now; empty when none is known. */
  lookup: (address: string) => readonly string[];
  /** Re-reads the addresses (the feed calls it, at most once a second, for an unknown source). */
  refresh: () => Promise<void>;
  deliver: (container: string, q: DnsQuery) => void;
  intervalMs?: number;
  /**
   * Empty the log once it is this big and read to the end (dnsmasq appends,
   * O_APPEND, so it writes on at the new end). Only one guard per host should:
   * the host's own; other readers notice the shrink and start over.
   */
  truncateAtBytes?: number;
  now?: () => number;
}

interface Tail {
  path: string;
  fd?: number;
  ino?: number;
  offset: number;
  partial: string;
  /** Lines before this offset were written before we looked: dated by their own stamp. */
  catchUpUntil: number;
  missingLogged: boolean;
}

/** How far back a (re)started guard reads: enough for the detector's minute. */
const CATCH_UP_BYTES = 512 * 1024;
const CATCH_UP_MS = 90_000;
const MAX_READ = 4 * 1024 * 1024;
const MAX_PENDING = 2_000;
const UNKNOWN_MS = 5_000;

export class DnsQueryFeed {
  private readonly tails = new Map<string, Tail>();
  private timer: NodeJS.Timeout | undefined;
  private readonly buf = Buffer.alloc(256 * 1024);
  private pending: Array<{ source: string; q: DnsQuery }> = [];
  private lastRefresh = 0;
  private refreshing: Promise<void> | undefined;
  private unattributedLoggedAt = 0;
  /** Sources no sandbox had at the last look (the host, other guards' sandboxes): not looked up again until then. */
  private readonly unknown = new Map<string, number>();
  /** Queries no sandbox could be found for (after a refresh). */
  unattributed = 0;
  delivered = 0;

  constructor(private readonly o: DnsFeedOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** Follows this log file (idempotent). */
  watch(path: string): void {
    if (this.tails.has(path)) return;
    this.tails.set(path, { path, offset: -1, partial: '', catchUpUntil: 0, missingLogged: false });
    if (!this.timer) {
      this.timer = setInterval(() => this.poll(), this.o.intervalMs ?? 250);
      this.timer.unref();
    }
    this.poll();
  }

  /** A sandbox started or got a new address: every source is worth a look again. */
  addressesChanged(): void {
    this.unknown.clear();
  }

  get paths(): string[] {
    return [...this.tails.keys()];
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const t of this.tails.values()) this.close(t);
  }

  /** Reads what is new in every file. */
  poll(): void {
    for (const t of this.tails.values()) {
      try {
        this.read(t);
      } catch (e) {
        this.o.log.warn(`reading the DNS query log ${t.path} failed: ${(e as Error).message}`);
        this.close(t);
      }
    }
  }

  private close(t: Tail): void {
    if (t.fd !== undefined) fs.closeSync(t.fd);
    t.fd = undefined;
  }

  private read(t: Tail): void {
    let st: fs.Stats;
    try {
      st = fs.statSync(t.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (!t.missingLogged) this.o.log.warn(`the DNS query log ${t.path} does not exist (yet): no names until dnsmasq writes it`);
      t.missingLogged = true;
      this.close(t);
      return;
    }
    if (t.fd === undefined || t.ino !== st.ino) {
      this.close(t);
      t.fd = fs.openSync(t.path, fs.constants.O_RDONLY);
      const first = t.offset < 0;
      t.ino = st.ino;
      // A guard starting now reads the last stretch (queries of the last minute count); a new file from its start.
      t.offset = first ? Math.max(0, st.size - CATCH_UP_BYTES) : 0;
      t.catchUpUntil = first ? st.size : 0;
      t.partial = '';
      if (first && t.offset > 0) t.partial = '\0'; // the first line is cut: dropped below
    }
    if (st.size < t.offset) {
      // Emptied (by the host's guard): dnsmasq writes on from the start.
      t.offset = 0;
      t.partial = '';
      t.catchUpUntil = 0;
    }
    let budget = MAX_READ;
    while (t.offset < st.size && budget > 0) {
      const n = fs.readSync(t.fd, this.buf, 0, Math.min(this.buf.length, budget), t.offset);
      if (n <= 0) break;
      const start = t.offset;
      t.offset += n;
      budget -= n;
      const text = t.partial + this.buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      t.partial = lines.pop() ?? '';
      if (t.partial.length > 8192) t.partial = '';
      for (const line of lines) this.line(line, start < t.catchUpUntil);
    }
    this.flushPending();
    if (this.o.truncateAtBytes && t.offset >= this.o.truncateAtBytes && t.offset >= st.size && t.partial === '') {
      // What dnsmasq appends between the stat and this truncate is lost: a few lines at most, once per this many bytes.
      fs.truncateSync(t.path, 0);
      t.offset = 0;
      t.catchUpUntil = 0;
    }
  }

  private line(line: string, catchingUp: boolean): void {
    if (line.startsWith('\0')) return;
    const l = parseQueryLine(line, this.now());
    if (!l) return;
    let time = this.now();
    if (catchingUp) {
      // Written before we looked: its own stamp dates it; a stamp we cannot trust (another time zone) drops it.
      if (l.stampedAt === undefined || l.stampedAt > time + 5_000 || time - l.stampedAt > CATCH_UP_MS) return;
      time = Math.min(time, l.stampedAt);
    }
    const q: DnsQuery = { name: l.name, time, type: l.type, ...(l.unprintable ? { unprintable: true } : {}) };
    const to = this.o.lookup(l.source);
    if (to.length) return this.deliverTo(to, q);
    if ((this.unknown.get(l.source) ?? 0) > this.now()) {
      this.unattributed++;
      return;
    }
    if (this.pending.length < MAX_PENDING) this.pending.push({ source: l.source, q });
  }

  private deliverTo(containers: readonly string[], q: DnsQuery): void {
    for (const c of containers) {
      this.delivered++;
      try {
        this.o.deliver(c, q);
      } catch (e) {
        this.o.log.warn(`delivering a DNS query to ${c} failed: ${(e as Error).message}`);
      }
    }
  }

  /** Queries from unknown sources: look the addresses up again, then hand them over or give up. */
  private flushPending(): void {
    if (this.pending.length === 0 || this.refreshing) return;
    if (this.now() - this.lastRefresh < 1_000) return;
    this.lastRefresh = this.now();
    this.refreshing = this.o
      .refresh()
      .catch((e: unknown) => this.o.log.debug(`re-reading sandbox addresses failed: ${(e as Error).message}`))
      .then(() => {
        const batch = this.pending;
        this.pending = [];
        const lost = new Map<string, number>();
        for (const p of batch) {
          const to = this.o.lookup(p.source);
          if (to.length) this.deliverTo(to, p.q);
          else lost.set(p.source, (lost.get(p.source) ?? 0) + 1);
        }
        for (const a of lost.keys()) this.unknown.set(a, this.now() + UNKNOWN_MS);
        if (this.unknown.size > 10_000) this.unknown.clear();
        const n = [...lost.values()].reduce((a, b) => a + b, 0);
        this.unattributed += n;
        // The host and sandboxes of other guards ask the same resolver: said now and then, not per line.
        if (n && this.now() - this.unattributedLoggedAt > 60_000) {
          this.unattributedLoggedAt = this.now();
          this.o.log.debug(`DNS queries from addresses of no sandbox this guard watches: ${[...lost].slice(0, 5).map(([a, k]) => `${a} (${k})`).join(', ')}`);
        }
      })
      .finally(() => (this.refreshing = undefined));
  }
}
