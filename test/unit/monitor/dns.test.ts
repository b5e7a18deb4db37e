/**
 * The DNS tunnel scorer on names, and the dnsmasq query log it is fed from.
 * Benign names are what an agent's tools really ask for (package registries,
 * git hosts, CDN and cloud host names, which are random-looking too); tunnel
 * names are shaped like iodine's (base32 under a short domain) and dnscat2's
 * (hex), with short labels, which the kernel's length rules cannot see.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { analyzeDnsQueries, dnsTunnelDetector, randomBitsOf, randomLabel } from '../../../helper/guard/monitor/detectors/dns-tunnel';
import { DEFAULT_THRESHOLDS } from '../../../helper/guard/monitor/detectors/common';
import { runDetectors } from '../../../helper/guard/monitor/detectors';
import type { DnsQuery } from '../../../helper/guard/monitor/detectors/types';
import { parseQueryLine, queryLogOf } from '../../../helper/guard/monitor/dns-log';
import { init, snap } from './build';

const now = 1_740_000_000_000;
const q = (name: string, ago = 1000): DnsQuery => ({ name, time: now - ago });
/** A second apart, as a slow tunnel or a build would ask. */
const series = (names: string[]) => names.map((n, i) => q(n, (names.length - i) * 1000));

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';
function base32(n: number): string {
  return [...randomBytes(n)].map((b) => B32[b % 32]).join('');
}
const hex = (n: number) => randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);

const BENIGN = [
  'registry.npmjs.org', 'registry.npmjs.org.', 'registry.yarnpkg.com', 'github.com', 'api.github.com', 'codeload.github.com',
  'objects.githubusercontent.com', 'raw.githubusercontent.com', 'pkg-containers.githubusercontent.com',
  'api.anthropic.com', 'statsig.anthropic.com', 'sentry.io', 'o4504801902854144.ingest.sentry.io',
  'd2c8v52ll5s99u.cloudfront.net', 'd1a2b3c4.cloudfront.net', 'd3rlzyg8r7kk5e.cloudfront.net', 'e1234.dscb.akamaiedge.net',
  'ec2-54-12-34-56.compute-1.amazonaws.com', 'my-lb-1234567890.us-east-1.elb.amazonaws.com', 's3.us-east-1.amazonaws.com',
  'mybucket-artifacts.s3.eu-west-1.amazonaws.com', 'r3---sn-4g5e6nz7.googlevideo.com', 'fonts.googleapis.com',
  'pypi.org', 'files.pythonhosted.org', 'deb.debian.org', 'security.debian.org', 'proxy.golang.org', 'sum.golang.org',
  'index.crates.io', 'static.crates.io', 'cdn.jsdelivr.net', 'unpkg.com', 'marketplace.visualstudio.com',
  'dc.services.visualstudio.com', 'update.code.visualstudio.com', 'xn--bcher-kva.example', 'applicationinsights.azure.com',
  'elasticbeanstalk.com', 'northeurope.cloudapp.azure.com', 'kubernetes.default.svc.cluster.local',
];

test('dns scorer: what agents really look up stays at most INFO, each name asked repeatedly (A and AAAA, every connection)', () => {
  const queries = BENIGN.flatMap((n, i) => [q(n, 59_000 - i * 1000), q(n, 58_900 - i * 1000), q(n, 30_000 - i * 500)]);
  assert.ok(queries.length < 200);
  assert.deepEqual(analyzeDnsQueries(queries, now, { ...analyzeDnsOptions(), rateThreshold: 200 }), []);
  // Several CDN hashes under one domain within a minute: still nothing (a page of assets, a few mirrors).
  const cdn = ['d2c8v52ll5s99u', 'd3rlzyg8r7kk5e', 'd1a2b3c4e5', 'dk2x8fh4l0v1p7'].map((h) => `${h}.cloudfront.net`);
  assert.deepEqual(analyzeDnsQueries(series(cdn), now), []);
});

function analyzeDnsOptions() {
  return { windowMs: 60_000, rateThreshold: 100, longLabel: 52, longSubdomain: 100, randomLabelMin: 10, randomNames: 3, randomBits: 320, unprintableNames: 3 };
}

test('dns scorer: an iodine-shaped tunnel with short base32 labels under a short domain, at a modest rate, is HIGH', () => {
  // 20 characters a label: no length rule fires, and 12 a minute is no rate.
  const names = Array.from({ length: 12 }, (_, i) => `${base32(20)}.${i}.t.ex.io`);
  const [f, ...rest] = analyzeDnsQueries(series(names), now);
  assert.equal(rest.length, 0);
  assert.equal(f?.rule, 'high-entropy');
  assert.equal(f?.level, 'high');
  assert.equal(f?.domain, 'ex.io');
  assert.ok(f!.examples.length >= 3 && f!.examples.every((e) => names.includes(e)), 'the names are the evidence');
  assert.match(f!.why, /distinct random-looking names carrying about \d+ bits/);
  // Fewer than the budget (two names) is not yet a tunnel.
  assert.deepEqual(analyzeDnsQueries(series(names.slice(0, 2)), now), []);
});

test('dns scorer: dnscat2-shaped hex labels, and letters-only random labels, are HIGH', () => {
  const dnscat = Array.from({ length: 6 }, () => `${hex(30)}.dc.example.com`);
  assert.deepEqual(analyzeDnsQueries(series(dnscat), now).map((f) => [f.rule, f.level, f.domain]), [['high-entropy', 'high', 'example.com']]);
  const letters = ['qxkzvbnmwrtplkjh', 'zxcvbnmqwrtsdfgh', 'hjklzxcvbnmqwrtp', 'ptkfzvbnmxqwrslk', 'mnbvcxzlkjhgfdsq', 'wrtzpqlkxcvbnmsd'].map((l) => `${l}.x.example.net`);
  assert.equal(analyzeDnsQueries(series(letters), now)[0]?.rule, 'high-entropy');
  // The same name again (a retry, A then AAAA) is one name, not many.
  const same = `${base32(20)}.t.ex.io`;
  assert.deepEqual(analyzeDnsQueries(series(Array(20).fill(same)), now), []);
});

test('dns scorer: labels are judged by shape, not entropy alone', () => {
  for (const word of ['registry', 'githubusercontent', 'elasticbeanstalk', 'applicationinsights', 'visualstudio', 'o4504801902854144', '1234567890', 'production']) {
    assert.equal(randomLabel(word), false, word);
  }
  for (const data of ['mfrggzdfmztwq2lk', '8f3a9c0d1e2b4a5f', 'k3j5h7g9f2d4s6a8', 'qxkzvbnmwrtplkjh']) assert.equal(randomLabel(data), true, data);
  assert.equal(randomBitsOf('ec2-54-12-34-56.compute-1').bits, 0, 'hyphenated parts are judged one by one');
  assert.ok(randomBitsOf('mfrggzdfmztwq2lk.0.t').bits > 50);
});

test('dns scorer: names the resolver could not print are HIGH from the third; the rate uses dns_query_threshold', () => {
  const raw = (ago: number): DnsQuery => ({ name: '', unprintable: true, time: now - ago });
  assert.deepEqual(analyzeDnsQueries([raw(1000), raw(2000)], now), []);
  assert.deepEqual(analyzeDnsQueries([raw(1000), raw(2000), raw(3000)], now).map((f) => [f.rule, f.level, f.queries]), [['unprintable', 'high', 3]]);

  // 40 lookups of the registry in a minute: nothing at the default 100, a WARNING at dns_query_threshold = 20.
  const busy = Array.from({ length: 40 }, (_, i) => q(i % 2 ? 'registry.npmjs.org' : 'github.com', i * 1000));
  const s = snap([init], { takenAt: now });
  const run = (threshold: number) => runDetectors(s, undefined, { thresholds: { ...DEFAULT_THRESHOLDS, dnsQueryThreshold: threshold }, dnsQueries: busy, newId: () => 'x' }, [dnsTunnelDetector]);
  assert.deepEqual(run(100), []);
  const [w] = run(20);
  assert.equal(w?.level, 'warning');
  assert.equal(w?.title, 'High DNS query rate');
  assert.match(w!.description, /40 queries per minute \(limit 20\)/);
});

test('dns scorer through the detector: the audit evidence holds the names, with hostile bytes kept as data', () => {
  const names = Array.from({ length: 8 }, (_, i) => `${base32(20)}.${i}.t.ex.io`);
  const s = snap([init], { takenAt: now });
  const [e] = runDetectors(s, undefined, { dnsQueries: series(names), newId: () => 'x' }, [dnsTunnelDetector]);
  assert.equal(e?.level, 'high');
  assert.equal(e?.evidence.rule, 'dns-tunnel/high-entropy');
  assert.equal(e?.evidence.dns?.domain, 'ex.io');
  assert.equal(e?.evidence.dns?.examples.length, 5);
  assert.ok(e!.evidence.dns!.examples.every((x) => names.includes(x)));
  const [u] = runDetectors(s, undefined, { dnsQueries: [1, 2, 3].map((i) => ({ name: '', unprintable: true, time: now - i })), newId: () => 'x' }, [dnsTunnelDetector]);
  assert.equal(u?.evidence.rule, 'dns-tunnel/unprintable');
  assert.equal(u?.evidence.key, '(unprintable):unprintable');
});

// ── the dnsmasq query log ───────────────────────────────────────────────────

test('dnsmasq log: the query lines of log-queries=extra, as dnsmasq 2.90 writes them; everything else is not a query', () => {
  const at = new Date(2026, 10, 27, 12, 0, 0).getTime();
  const l = parseQueryLine('Nov 27 11:08:38 dnsmasq[12252]: 1 10.213.0.150/53760 query[A] MFRGGZdfmzt.Example.com from 10.213.0.150', at);
  assert.deepEqual(l, { name: 'mfrggzdfmzt.example.com', unprintable: false, type: 'A', source: '10.213.0.150', sourcePort: 53760, stampedAt: new Date(2026, 10, 27, 11, 8, 38).getTime() });
  assert.deepEqual(parseQueryLine('Nov 27 11:08:39 dnsmasq[12252]: 3 10.213.0.150/57039 query[A] <name unprintable> from 10.213.0.150', at), {
    name: '', unprintable: true, type: 'A', source: '10.213.0.150', sourcePort: 57039, stampedAt: new Date(2026, 10, 27, 11, 8, 39).getTime(),
  });
  // Without `extra`, and without a stamp (stderr): still a query, with no port.
  assert.deepEqual(parseQueryLine('dnsmasq[7]: query[TXT] x.example from fd42::5'), { name: 'x.example', unprintable: false, type: 'TXT', source: 'fd42::5' });
  // A stamp of December read in January is last year's.
  assert.equal(new Date(parseQueryLine('Dec 31 23:59:59 dnsmasq[1]: query[A] a.b from 10.0.0.1', new Date(2027, 0, 1, 0, 0, 5).getTime())!.stampedAt!).getFullYear(), 2026);
  for (const other of [
    'Nov 27 11:08:38 dnsmasq[12252]: 1 10.213.0.150/53760 config error is REFUSED (EDE: not ready)',
    'Nov 27 11:08:38 dnsmasq[12252]: 1 10.213.0.150/53760 forwarded x.example to 1.1.1.1',
    'Nov 27 11:08:37 dnsmasq[12252]: started, version 2.90 cachesize 150',
    'Nov 27 11:08:38 dnsmasq-dhcp[12252]: DHCPACK(coibr0) 10.213.0.150 00:16:3e:aa:bb:cc c1',
    // The port's address and the source must agree (dnsmasq prints the same one twice).
    'Nov 27 11:08:38 dnsmasq[1]: 1 10.213.0.9/5 query[A] x.example from 10.213.0.150',
    'Nov 27 11:08:38 dnsmasq[1]: 1 10.213.0.9/5 query[A] two words from 10.213.0.9',
    '',
  ]) assert.equal(parseQueryLine(other), undefined, other);
});

test('dnsmasq log: the file comes from the bridge\'s raw.dnsmasq, only when queries are logged to a file', () => {
  assert.deepEqual(queryLogOf('dhcp-option=option:router,10.213.0.2\nno-resolv\nlog-queries=extra\nlog-facility=/var/lib/incus/networks/coibr0/coi-dns-queries.log'), { path: '/var/lib/incus/networks/coibr0/coi-dns-queries.log', extra: true });
  assert.deepEqual(queryLogOf('log-queries\nlog-facility=/tmp/q.log'), { path: '/tmp/q.log', extra: false });
  assert.equal(queryLogOf('log-facility=/tmp/q.log'), undefined, 'no queries logged');
  assert.equal(queryLogOf('log-queries\nlog-facility=-'), undefined, 'stderr');
  assert.equal(queryLogOf('log-queries\nlog-facility=DAEMON'), undefined, 'syslog');
  assert.equal(queryLogOf(undefined), undefined);
});

test('dns: a query the firewall noted going to another resolver than the gateway is a WARNING naming that resolver (its names are not seen)', () => {
  const s = snap([init], { takenAt: now });
  const packets = [{ time: now - 5, rule: 'dnsext', action: 'log' as const, proto: 'udp', src: '10.213.0.120', dst: '8.8.8.8', dport: 53 }];
  const [e, ...rest] = runDetectors(s, undefined, { packets, newId: () => 'x' }, [dnsTunnelDetector]);
  assert.equal(rest.length, 0);
  assert.equal(e?.level, 'warning');
  assert.equal(e?.title, 'DNS to another resolver');
  assert.equal(e?.evidence.rule, 'dns-tunnel/other-resolver');
  assert.equal(e?.evidence.network?.remote, '8.8.8.8');
});
