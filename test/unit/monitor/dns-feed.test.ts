/**
 * The DNS query feed on a real file written the way dnsmasq writes it
 * (appended lines, emptied in place by the host's guard), with the
 * attribution the supervisor gives it: source address → sandbox.
 */
import { strict as assert } from 'node:assert';
import { appendFileSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import type { DnsQuery } from '../../../helper/guard/monitor/detectors/types';
import { DnsQueryFeed } from '../../../helper/guard/monitor/dns-feed';
import type { Log } from '../../../helper/log';

const dir = mkdtempSync(path.join(tmpdir(), 'coi-dnsfeed-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const quiet: Log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
const stamp = (d: Date) => `${d.toLocaleString('en-US', { month: 'short' })} ${String(d.getDate()).padStart(2, ' ')} ${d.toTimeString().slice(0, 8)}`;
const line = (src: string, name: string, at = new Date(), type = 'A') => `${stamp(at)} dnsmasq[42]: 7 ${src}/40000 query[${type}] ${name} from ${src}\n`;

function feedOn(file: string, book: Map<string, string[]>, opts: { truncateAtBytes?: number; onRefresh?: () => void } = {}) {
  const got: Array<[string, DnsQuery]> = [];
  let refreshes = 0;
  const feed = new DnsQueryFeed({
    log: quiet,
    lookup: (a) => book.get(a) ?? [],
    refresh: async () => {
      refreshes++;
      opts.onRefresh?.();
    },
    deliver: (c, q) => got.push([c, q]),
    intervalMs: 60_000,
    ...(opts.truncateAtBytes ? { truncateAtBytes: opts.truncateAtBytes } : {}),
  });
  return { feed, got, refreshes: () => refreshes };
}

test('dns feed: lines written before it looked count when recent; new lines are handed to the sandbox of their source', () => {
  const file = path.join(dir, 'a.log');
  const old = new Date(Date.now() - 10 * 60_000);
  writeFileSync(file, `${line('10.0.0.5', 'stale.example', old)}${line('10.0.0.5', 'recent.example')}half a line without its end`);
  const book = new Map([['10.0.0.5', ['sb-a']], ['10.0.0.6', ['sb-b', 'sb-c']]]);
  const { feed, got } = feedOn(file, book);
  feed.watch(file);
  assert.deepEqual(got.map(([c, q]) => [c, q.name]), [['sb-a', 'recent.example']], 'ten minutes old: outside any window');
  appendFileSync(file, `\n${line('10.0.0.6', 'MixedCase.Example.')}Nov 27 11:08:38 dnsmasq[42]: 7 10.0.0.6/40000 config error is REFUSED\n`);
  appendFileSync(file, `${stamp(new Date())} dnsmasq[42]: 8 10.0.0.6/4 query[A] <name unprintable> from 10.0.0.6\n`);
  feed.poll();
  // One address claimed by two sandboxes (a forged address): both get it.
  assert.deepEqual(got.slice(1).map(([c, q]) => [c, q.name, q.unprintable ?? false]), [
    ['sb-b', 'mixedcase.example', false],
    ['sb-c', 'mixedcase.example', false],
    ['sb-b', '', true],
    ['sb-c', '', true],
  ]);
  feed.stop();
});

test('dns feed: an unknown source makes it look the addresses up again (at most once a second), then hands the queries over', async () => {
  const file = path.join(dir, 'b.log');
  writeFileSync(file, '');
  const book = new Map<string, string[]>();
  const { feed, got, refreshes } = feedOn(file, book, { onRefresh: () => book.set('10.0.0.9', ['sb-new']) });
  feed.watch(file);
  appendFileSync(file, line('10.0.0.9', 'first.example') + line('10.0.0.77', 'host.example'));
  feed.poll();
  await new Promise((r) => setImmediate(r));
  assert.equal(refreshes(), 1);
  assert.deepEqual(got.map(([c, q]) => [c, q.name]), [['sb-new', 'first.example']]);
  assert.equal(feed.unattributed, 1, 'the host\'s own query belongs to no sandbox');
  // Still unknown a moment later: counted, not looked up again.
  appendFileSync(file, line('10.0.0.77', 'again.example'));
  feed.poll();
  assert.equal(refreshes(), 1);
  assert.equal(feed.unattributed, 2);
  feed.stop();
});

test('dns feed: the host\'s guard empties a full log once read; a reader of an emptied log starts over', () => {
  const file = path.join(dir, 'c.log');
  writeFileSync(file, '');
  const book = new Map([['10.0.0.5', ['sb-a']]]);
  const host = feedOn(file, book, { truncateAtBytes: 400 });
  const other = feedOn(file, book);
  host.feed.watch(file);
  other.feed.watch(file);
  for (let i = 0; i < 6; i++) appendFileSync(file, line('10.0.0.5', `n${i}.example`));
  other.feed.poll();
  host.feed.poll();
  assert.equal(statSync(file).size, 0, 'emptied after reading it all');
  appendFileSync(file, line('10.0.0.5', 'after.example'));
  other.feed.poll();
  host.feed.poll();
  for (const f of [host, other]) assert.deepEqual(f.got.map(([, q]) => q.name), ['n0.example', 'n1.example', 'n2.example', 'n3.example', 'n4.example', 'n5.example', 'after.example']);
  // Emptied by someone else, too: no line is read twice nor skipped.
  truncateSync(file, 0);
  appendFileSync(file, line('10.0.0.5', 'z.example'));
  other.feed.poll();
  assert.equal(other.got.at(-1)?.[1].name, 'z.example');
  host.feed.stop();
  other.feed.stop();
});

test('dns feed: a missing log is waited for, not an error', () => {
  const file = path.join(dir, 'later.log');
  const { feed, got } = feedOn(file, new Map([['10.0.0.5', ['sb-a']]]));
  feed.watch(file);
  writeFileSync(file, line('10.0.0.5', 'x.example'));
  feed.poll();
  assert.deepEqual(got.map(([, q]) => q.name), ['x.example']);
  feed.stop();
});
