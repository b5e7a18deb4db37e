/**
 * Network isolation with real sandboxes: `coi shell` launches real containers
 * on the dead-end network (set-up's `coi-deadend` namespace is every
 * container's gateway and owns every test address, so nothing leaves this
 * machine), fenced by a guard of this test's own:
 *
 *   - on a private socket, with its own scope (COI_GUARD_SCOPE): it fences only
 *     the instances this test labels with that scope, in tables of their own,
 *     and leaves the host's guard and every other engineer's sandboxes alone;
 *   - resolving allowlist names ONLY with this test's DNS server, which runs in
 *     coi-deadend on 10.213.0.2 (reached from the host over coibr0); the host's
 *     resolvers are never asked about a test name;
 *   - with the TTL floor lowered to 2 s (COI_NET_TTL_FLOOR_SEC), so a refresh
 *     is seen in seconds instead of a minute.
 *
 * From inside the containers a small Perl probe (the image has perl-base)
 * makes each connection with a 2 s bound. Listeners in coi-deadend answer on a
 * port chosen per run, so concurrent runs (and other engineers' listeners)
 * never clash.
 *
 * The churn test creates and deletes labelled instances through the Incus API
 * and secures each through the guard (the same calls a launch makes), most of
 * them without starting them: 200 full launches, which wait for systemd to
 * boot, do not fit the time this file may take (see the test for why that is
 * enough).
 *
 * Whether an apply has happened is never guessed from time: the guard's status
 * names the requests each recent apply served (`instance-deleted <name>`, …)
 * and those still waiting, and the tests wait for those.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GuardClient } from '../../helper/guard/client';
import { HOSTS_BEGIN } from '../../helper/guard/network/allowlist';
import { tablesFor } from '../../helper/guard/network/names';
import { listInstalledRules, nftExec, removeAllRules } from '../../helper/guard/network/nft';
import type { IncusClient } from '../../helper/incus/client';
import { GuardEvent, GuardNetworkStatus, GuardSecureSandbox, NetworkEvent } from '../../helper/protocol/methods';
import type { RequestDef } from '../../helper/protocol/rpc';
import { GuardPoolDrain } from '../../helper/pool/protocol';
import { LABELS } from '../../helper/sandbox/labels';
import { containerName, hostVethName } from '../../helper/sandbox/naming';
import { DEFAULT_NETWORK, NETWORK_LABEL } from '../../helper/sandbox/network-label';
import { buildInstanceSpec } from '../../helper/sandbox/spec';
import { DEAD_END_HOSTS, SETUP_NAMES } from '../../helper/setup/names';
import { DEFAULT_GUARD_LOG } from '../../helper/guard/paths';
import { HELPER, requireIncus, sleep } from './support';

const RUN = randomBytes(3).toString('hex');
const SCOPE = `nt${RUN}`;
const PREFIX = `coi-nt${RUN}-`;
const TABLES = tablesFor(SCOPE);
const root = mkdtempSync('/tmp/coi-net-');
chmodSync(root, 0o755);
const socketPath = path.join(root, 'guard.sock');
const guardLog = path.join(root, 'guard.log');
const nftWrapper = path.join(root, 'nft-wrapper.sh');
/** "with <name>" or "without <name>": the next apply whose script has (or lacks) that sandbox stalls in nft. */
const stall = path.join(root, 'stall');
/** The pid of the stalled nft, and the script it was given. */
const inApply = path.join(root, 'in-apply');
const inApplyScript = path.join(root, 'in-apply.nft');
const cacheDir = path.join(root, 'cache');
/** Listener port in coi-deadend for this run; the DNS server listens on PORT + 1. */
const PORT = 20000 + randomInt(0, 20000);
const DNS = `10.213.0.2:${PORT + 1}`;
const DOMAIN = 'allowed.test';
/** The churn: 200 sandboxes as the issue asks (COI_NET_CHURN changes the count, for a quick local run). */
const CHURN = Number(process.env.COI_NET_CHURN ?? 200);

let c: IncusClient;
let guard: ChildProcess | undefined;
let deadend: ChildProcessWithoutNullStreams | undefined;
let events: GuardClient | undefined;
const seen: NetworkEvent[] = [];
const sb = { r1: '', r2: '', a: '', o: '' };
let r2Ip = '';

// ── processes ───────────────────────────────────────────────────────────────

function sh(cmd: string, args: string[], timeoutMs = 20_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * In coi-deadend: TCP listeners on PORT at every test address (greet "hi",
 * then echo), best-effort TCP and UDP on 198.51.100.2:53, and a DNS server on
 * 10.213.0.2:PORT+1 whose answers the test sets through stdin.
 */
const DEADEND = `
const net = require('net'), dgram = require('dgram'), readline = require('readline');
const { hosts, port, dnsHost, dnsPort } = JSON.parse(process.argv[1]);
const records = new Map();
let pending = hosts.length + 1;
const ready = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
for (const h of hosts) {
  const s = net.createServer((c) => { c.on('error', () => {}); c.write('hi ' + h + '\\n'); c.on('data', (d) => c.write(d)); });
  s.on('error', (e) => { process.stderr.write('listen ' + h + ': ' + e.message + '\\n'); process.exit(3); });
  s.listen(port, h, ready);
}
// Optional: a resolver-looking service on an "internet" host, to show allowlist refuses DNS even to allowed addresses.
try { const t = net.createServer((c) => c.destroy()); t.on('error', () => {}); t.listen(53, '198.51.100.2'); } catch {}
try { const u = dgram.createSocket('udp4'); u.on('error', () => {}); u.on('message', (m, r) => u.send(m.subarray(0, 2), r.port, r.address)); u.bind(53, '198.51.100.2'); } catch {}
function answer(q) {
  let i = 12; const labels = [];
  while (i < q.length && q[i] !== 0) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString('latin1')); i += q[i] + 1; }
  const qend = i + 5;
  const name = labels.join('.').toLowerCase();
  const qtype = q.readUInt16BE(i + 1);
  const rec = records.get(name);
  const ips = rec && qtype === 1 ? rec.ips : [];
  const head = Buffer.alloc(12);
  q.copy(head, 0, 0, 2);
  head.writeUInt16BE(rec ? 0x8180 : 0x8183, 2);
  head.writeUInt16BE(1, 4); head.writeUInt16BE(ips.length, 6);
  const ans = ips.map((ip) => { const b = Buffer.alloc(16); b.writeUInt16BE(0xc00c, 0); b.writeUInt16BE(1, 2); b.writeUInt16BE(1, 4); b.writeUInt32BE(rec.ttl, 6); b.writeUInt16BE(4, 10); ip.split('.').forEach((o, k) => b.writeUInt8(Number(o), 12 + k)); return b; });
  return Buffer.concat([head, q.subarray(12, qend), ...ans]);
}
const dns = dgram.createSocket('udp4');
dns.on('message', (m, r) => { try { dns.send(answer(m), r.port, r.address); } catch (e) { process.stderr.write('dns: ' + e.message + '\\n'); } });
dns.on('error', (e) => { process.stderr.write('dns: ' + e.message + '\\n'); process.exit(3); });
dns.bind(dnsPort, dnsHost, ready);
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const m = JSON.parse(l);
  if (m.op === 'dns') records.set(m.name, { ips: m.ips, ttl: m.ttl });
  process.stdout.write('ok ' + m.seq + '\\n');
});
process.stdin.on('end', () => process.exit(0));
`;

let cmdSeq = 0;
function deadendCommand(msg: Record<string, unknown>): Promise<void> {
  const seq = ++cmdSeq;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`coi-deadend helper did not answer ${JSON.stringify(msg)}`)), 5_000);
    let buf = '';
    const on = (d: string) => {
      buf += d;
      if (buf.split('\n').includes(`ok ${seq}`)) {
        clearTimeout(t);
        deadend!.stdout.off('data', on);
        resolve();
      }
    };
    deadend!.stdout.on('data', on);
    deadend!.stdin.write(`${JSON.stringify({ ...msg, seq })}\n`);
  });
}

function startDeadend(): Promise<void> {
  const hosts = Object.values(DEAD_END_HOSTS);
  deadend = spawn('ip', ['netns', 'exec', SETUP_NAMES.deadEndNamespace, process.execPath, '-e', DEADEND, JSON.stringify({ hosts, port: PORT, dnsHost: '10.213.0.2', dnsPort: PORT + 1 })], { stdio: ['pipe', 'pipe', 'pipe'] });
  deadend.stdout.setEncoding('utf8');
  deadend.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(`[coi-deadend] ${d}`));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the coi-deadend listeners did not start within 10 s')), 10_000);
    let buf = '';
    const on = (d: string) => {
      buf += d;
      if (buf.includes('ready\n')) {
        clearTimeout(t);
        deadend!.stdout.off('data', on);
        resolve();
      }
    };
    deadend!.stdout.on('data', on);
    deadend!.once('exit', (code) => reject(new Error(`the coi-deadend helper exited (${code}) before it was ready`)));
  });
}

const guardEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  COI_GUARD_SOCKET: socketPath,
  COI_GUARD_SCOPE: SCOPE,
  COI_DNS_RESOLVER: DNS,
  COI_NET_CACHE_DIR: cacheDir,
  COI_NET_STATE_DIR: path.join(root, 'state'),
  COI_NET_TTL_FLOOR_SEC: '2',
  COI_NET_GRACE_SEC: '5',
  COI_NFT: nftWrapper,
  COI_LOG_LEVEL: 'debug',
});

async function startGuard(): Promise<void> {
  const fd = openSync(guardLog, 'a');
  guard = spawn(process.execPath, [HELPER, 'guard', 'run'], { env: guardEnv(), stdio: ['ignore', fd, fd] });
  const probe = new GuardClient({ socketPath, reconnect: true });
  probe.connect({ timeoutMs: 500 }).catch(() => undefined);
  try {
    await probe.waitConnected(20_000);
  } finally {
    probe.close();
  }
  events = new GuardClient({ socketPath, reconnect: true });
  await events.connect({ timeoutMs: 2_000 });
  events.on('event', (e: GuardEvent) => {
    if (e.topic === 'network') seen.push(e.event);
  });
  await events.subscribe(['network']);
}

function stopEvents(): void {
  events?.close();
  events = undefined;
}

async function guardRequest<P, R>(def: RequestDef<P, R>, params: P): Promise<R> {
  const g = new GuardClient({ socketPath });
  await g.connect({ timeoutMs: 3_000 });
  try {
    return await g.request(def, params);
  } finally {
    g.close();
  }
}

function coi(args: string[], home: string, cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HELPER, ...args], {
      cwd,
      env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: SCOPE, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coi ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * COI_TEST_POOL=1: the same tests against sandboxes taken from the warm pool
 * (`[pool] size = 1`, the workspace's pool filled before each launch, and each
 * launched sandbox checked to be a taken member).
 */
const POOLED = process.env.COI_TEST_POOL === '1';

function homeWith(name: string, network: string): string {
  const home = path.join(root, `home-${name}`);
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n${POOLED ? '[pool]\nsize = 1\n\n' : ''}${network}`);
  return home;
}

/** Allowlist sandboxes are not pooled yet (docs/pool.md): they launch cold in the pooled run too. */
const pooledHome = (home: string) => POOLED && !readFileSync(path.join(home, '.coi', 'config.toml'), 'utf8').includes('"allowlist"');

async function prewarm(home: string, ws: string): Promise<void> {
  if (!pooledHome(home)) return;
  const r = await coi(['pool', 'warm', '--wait', '120'], home, ws);
  assert.equal(r.code, 0, `coi pool warm failed: ${r.stderr}`);
}

async function assertPooled(home: string, name: string): Promise<void> {
  if (!pooledHome(home)) return;
  const inst = await c.getInstance(name);
  assert.equal(inst.config['user.coi.pool-state'], 'taken', `${name} was taken from the warm pool`);
}

function workspace(name: string): string {
  const ws = path.join(root, `ws-${name}`);
  mkdirSync(ws, { recursive: true });
  return ws;
}

async function launch(home: string, ws: string): Promise<string> {
  await prewarm(home, ws);
  const r = await coi(['shell', '--background'], home, ws);
  assert.equal(r.code, 0, `coi shell failed: ${r.stderr}`);
  const name = r.stdout.trim();
  assert.ok(name.startsWith(PREFIX), `launched ${name}`);
  await assertPooled(home, name);
  return name;
}

// ── inside the containers ───────────────────────────────────────────────────

/** One bounded attempt per "proto,host,port[,from]"; prints "spec result ms". dns = a UDP DNS query that waits for any reply. */
const PROBE = String.raw`#!/usr/bin/perl
use strict; use warnings; use IO::Socket::INET; use IO::Select; use Time::HiRes qw(time);
sub classify { my $e = shift // ''; return 'refused' if $e =~ /refused/i; return 'unreachable' if $e =~ /unreachable|no route/i; return 'timeout' if $e =~ /timed out|timeout/i; $e =~ s/\s+/_/g; return "error:$e"; }
for my $spec (@ARGV) {
  my ($proto, $host, $port, $from) = split /,/, $spec;
  my $t0 = time; my $res;
  if ($proto eq 'tcp') {
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 2, ($from ? (LocalAddr => $from) : ()));
    if ($s) { $res = 'connected'; close $s; } else { $res = classify("$!"); $res = 'timeout' if time - $t0 >= 1.9; }
  } else {
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'udp', ($from ? (LocalAddr => $from) : ()));
    if (!$s) { $res = classify("$!"); }
    else {
      my $q = pack('n6', 0x4242, 0x0100, 1, 0, 0, 0) . "\x07example\x04test\x00" . pack('n2', 1, 1);
      $s->send($q);
      my $buf; my $sel = IO::Select->new($s);
      if ($sel->can_read(2)) { my $r = $s->recv($buf, 512); $res = defined($r) && length($buf) ? 'reply' : classify("$!"); } else { $res = 'timeout'; }
    }
  }
  printf "%s %s %d\n", $spec, $res, (time - $t0) * 1000;
}
`;

/** Keeps one TCP connection open: greeting to live.greeting, then on live.go sends "ping" and writes the answer to live.reply. */
const LIVE = String.raw`#!/usr/bin/perl
use strict; use warnings; use IO::Socket::INET; use IO::Select;
my ($host, $port, $dir) = @ARGV;
sub put { my ($f, $t) = @_; open(my $h, '>', "$dir/$f.tmp") or die; print $h $t; close $h; rename "$dir/$f.tmp", "$dir/$f"; }
my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 3) or do { put('live.err', "$!\n"); exit 1 };
my $sel = IO::Select->new($s);
my $g = $sel->can_read(3) ? <$s> : "timeout\n";
put('live.greeting', $g // "eof\n");
for (1 .. 1200) { last if -e "$dir/live.go"; select(undef, undef, undef, 0.1); }
print $s "ping\n";
my $r = $sel->can_read(3) ? <$s> : "timeout\n";
put('live.reply', $r // "eof\n");
`;

const LISTEN = String.raw`#!/usr/bin/perl
use strict; use warnings; use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 16, ReuseAddr => 1, Proto => 'tcp') or die "$!";
while (my $c = $s->accept) { print $c "hi from the container\n"; close $c; }
`;

async function pushTools(name: string): Promise<void> {
  await c.pushFile(name, '/usr/local/bin/coi-probe', Buffer.from(PROBE), { mode: 0o755 });
  await c.pushFile(name, '/usr/local/bin/coi-live', Buffer.from(LIVE), { mode: 0o755 });
  await c.pushFile(name, '/usr/local/bin/coi-listen', Buffer.from(LISTEN), { mode: 0o755 });
}

type Outcome = 'connected' | 'reply' | 'refused' | 'unreachable' | 'timeout' | `error:${string}`;

async function probe(name: string, specs: string[]): Promise<Array<{ spec: string; result: Outcome; ms: number }>> {
  // As the agent's user, like the agent would.
  const r = await c.exec(name, ['/usr/local/bin/coi-probe', ...specs], { user: 1000, group: 1000, timeoutMs: specs.length * 3_000 + 10_000 });
  assert.equal(r.exitCode, 0, `probe in ${name} failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => {
      const [spec, result, ms] = l.split(' ');
      return { spec: spec!, result: result as Outcome, ms: Number(ms) };
    });
}

const tcp = (host: string, port = PORT, from?: string) => `tcp,${host},${port}${from ? `,${from}` : ''}`;
const dnsq = (host: string, port = 53) => `dns,${host},${port}`;

/** Asserts a table of destination → outcome, naming each row that differs. */
async function expectTable(name: string, rows: Array<[string, string, Outcome]>): Promise<Array<{ spec: string; result: Outcome; ms: number }>> {
  const got = await probe(name, rows.map((r) => r[1]));
  const diffs = rows.map((r, i) => [r[0], r[1], r[2], got[i]?.result] as const).filter(([, , want, have]) => want !== have);
  assert.deepEqual(diffs, [], `${name}: destinations with unexpected outcomes (what, probe, expected, got):\n${diffs.map((d) => d.join('  ')).join('\n')}`);
  return got;
}

async function waitEvent(match: (e: NetworkEvent) => boolean, what: string, ms = 5_000): Promise<NetworkEvent> {
  const deadline = Date.now() + ms;
  for (;;) {
    const e = seen.find(match);
    if (e) return e;
    if (Date.now() > deadline) assert.fail(`no network event for ${what} within ${ms} ms; seen: ${JSON.stringify(seen.slice(-10))}`);
    await sleep(50);
  }
}

async function ipv4Of(name: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const st = await c.getState(name);
    const a = st.network?.eth0?.addresses.find((x) => x.family === 'inet' && x.scope === 'global');
    if (a) return a.address;
    await sleep(100);
  }
  throw new Error(`${name} got no IPv4 address`);
}

async function installed(): Promise<string[]> {
  const keys = (await listInstalledRules(nftExec(), TABLES)).sandboxes.map((s) => s.key).sort();
  if (!POOLED) return keys;
  const untaken = await untakenPoolMembers();
  return keys.filter((k) => !untaken.has(k));
}

/**
 * Pooled: the members the guard refills after each take are no sandboxes of the test's (their rules, the
 * strictest, are test 1's), so every comparison of installed and live sandboxes leaves them out.
 */
async function untakenPoolMembers(): Promise<Set<string>> {
  if (!POOLED) return new Set();
  return new Set((await c.listInstances({ recursion: 1 })).filter((i) => /^(idle|filling)$/.test(i.config['user.coi.pool-state'] ?? '')).map((i) => i.name));
}

async function waitInstalled(want: string[], ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let have = await installed();
  while (Date.now() < deadline && JSON.stringify(have) !== JSON.stringify([...want].sort())) {
    await sleep(100);
    have = await installed();
  }
  assert.deepEqual(have, [...want].sort());
}

function ourRulesetText(): string {
  const parts = [sh('nft', ['list', 'table', 'inet', TABLES.filter]).stdout, sh('nft', ['list', 'table', 'netdev', TABLES.ingress]).stdout];
  return parts.join('\n');
}

/**
 * Every instance name of this test that occurs anywhere in our tables (chain, set and limit names, identity
 * comments, log prefixes), whole: a name is PREFIX + [A-Za-z0-9-], and in nft it is always followed by something
 * else (`_net`, ` iface=`, `:rule`). A substring test would find `…-c67` inside the live `…-c673a093-1`.
 */
function namesInRuleset(): Set<string> {
  return new Set(ourRulesetText().match(new RegExp(`${PREFIX}[A-Za-z0-9-]+`, 'g')) ?? []);
}

/** The instances of this test's scope that exist now: the sandboxes that should have rules. */
async function liveInScope(): Promise<string[]> {
  const untaken = await untakenPoolMembers();
  return (await c.listInstances({ recursion: 1 })).filter((i) => i.config[LABELS.guardScope] === SCOPE && !untaken.has(i.name)).map((i) => i.name).sort();
}

/**
 * Waits until the guard has applied, successfully, a ruleset for this request (e.g. `instance-deleted <name>`:
 * the guard got the deletion event and listed Incus after it). Fails if it never does: that is the guard missing
 * an event, not slowness.
 */
async function waitServed(request: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await guardRequest(GuardNetworkStatus, {});
    const applies = s.recentApplies ?? [];
    const i = applies.findIndex((a) => a.reasons?.includes(request));
    // A failed apply is retried: any later successful one lists Incus after the request too.
    if (i >= 0 && applies.slice(i).some((a) => a.ok)) return;
    if (Date.now() > deadline) assert.fail(`the guard applied no ruleset for "${request}" within ${ms} ms; waiting: ${JSON.stringify(s.pending)}; its last applies: ${JSON.stringify(applies.slice(-5))}`);
    await sleep(100);
  }
}

/** Waits until the guard has a request waiting for its next apply (an apply is running, stalled). */
async function waitPending(request: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await guardRequest(GuardNetworkStatus, {});
    if (s.pending?.includes(request)) return;
    if (Date.now() > deadline) assert.fail(`the guard did not queue an apply for "${request}" within ${ms} ms; waiting: ${JSON.stringify(s.pending)}; its last applies: ${JSON.stringify((s.recentApplies ?? []).slice(-5))}`);
    await sleep(50);
  }
}

/** Stalls the next apply whose script has (`with`) or lacks (`without`) this sandbox; resolves with the pid of its nft once it stalls. */
async function stallApply(when: 'with' | 'without', name: string, trigger: () => Promise<unknown>): Promise<number> {
  rmSync(inApply, { force: true });
  rmSync(inApplyScript, { force: true });
  writeFileSync(stall, `${when} ${name}\n`);
  await trigger();
  const deadline = Date.now() + 15_000;
  while (!existsSync(inApply) && Date.now() < deadline) await sleep(50);
  assert.ok(existsSync(inApply), `the guard started an apply ${when} ${name}`);
  return Number(readFileSync(inApply, 'utf8').trim());
}

function releaseApply(): void {
  rmSync(stall, { force: true });
  rmSync(inApply, { force: true });
}

// ── set-up ──────────────────────────────────────────────────────────────────

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the network tests need root (nft, network namespaces, the guard)');
  c = await requireIncus();
  assert.ok(sh('ip', ['netns', 'list']).stdout.includes(SETUP_NAMES.deadEndNamespace), `the network tests need the dead-end network: sudo node dist/helper.js setup --dead-end-network`);
  // A stand-in for nft that can be made to stall one chosen apply (see `stall`); otherwise it is nft. The guard runs
  // `nft -f <script>`; a sandbox is in a script by its identity comment "key=<name> ".
  writeFileSync(
    nftWrapper,
    [
      '#!/bin/sh',
      `if [ "$1" = "-f" ] && [ -e "${stall}" ] && read -r want key < "${stall}"; then`,
      '  if grep -qF -- "key=$key " "$2"; then has=with; else has=without; fi',
      '  if [ "$want" = "$has" ]; then',
      `    cp "$2" "${inApplyScript}"; echo $$ > "${inApply}.tmp"; mv "${inApply}.tmp" "${inApply}"`,
      `    while [ -e "${stall}" ]; do sleep 0.1; done`,
      '  fi',
      'fi',
      'exec nft "$@"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  await startDeadend();
  await deadendCommand({ op: 'dns', name: DOMAIN, ips: [DEAD_END_HOSTS.internet], ttl: 2 });
  await startGuard();
  const homeR = homeWith('restricted', '');
  const homeA = homeWith('allowlist', `[network]\nmode = "allowlist"\nallowed_domains = ["${DOMAIN}", "${DEAD_END_HOSTS.internet2}/32"]\nrefresh_interval_minutes = 1\n`);
  const homeO = homeWith('open', '[network]\nmode = "open"\n');
  const t0 = Date.now();
  [sb.r1, sb.r2, sb.a, sb.o] = await Promise.all([launch(homeR, workspace('r1')), launch(homeR, workspace('r2')), launch(homeA, workspace('a')), launch(homeO, workspace('o'))]);
  console.log(`# 4 sandboxes launched in ${Date.now() - t0} ms`);
  await Promise.all(Object.values(sb).map(pushTools));
  r2Ip = await ipv4Of(sb.r2);
  await c.exec(sb.r2, ['sh', '-c', 'setsid -f /usr/local/bin/coi-listen >/dev/null 2>&1 </dev/null'], { timeoutMs: 10_000 });
  await Promise.all(Object.values(sb).map(ipv4Of));
});

after(async () => {
  stopEvents();
  // The guard refills the pool: make it stop before deleting what is left.
  if (POOLED) await guardRequest(GuardPoolDrain, {}).catch(() => undefined);
  for (const i of await c.listInstances({ recursion: 1 }).catch(() => [])) {
    if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  }
  if (guard && guard.exitCode === null) {
    guard.kill('SIGTERM');
    await new Promise((r) => guard!.once('exit', r));
  }
  // Our scope's tables: a scoped guard's rules are this test's to remove.
  await removeAllRules(nftExec(), TABLES).catch(() => undefined);
  deadend?.stdin.end();
  await sleep(200);
  if (deadend && deadend.exitCode === null) deadend.kill('SIGKILL');
  if (process.env.COI_NET_KEEP_LOG) console.log(readFileSync(guardLog, 'utf8'));
  rmSync(root, { recursive: true, force: true });
});

// ── tests ───────────────────────────────────────────────────────────────────

describe(`network isolation of real sandboxes${POOLED ? ' (taken from the warm pool)' : ''}`, () => {
  test('the guard says it fences networks; each sandbox records its settings and has rules on its own veth', async () => {
    const g = new GuardClient({ socketPath });
    await g.connect();
    const info = await g.info();
    g.close();
    assert.ok(info.capabilities.includes('network'), `capabilities: ${info.capabilities.join(', ')}`);
    const modes: Record<string, string> = {};
    for (const name of Object.values(sb)) {
      const inst = await c.getInstance(name);
      const label = JSON.parse(inst.config[NETWORK_LABEL] ?? '{}') as { mode: string; domains?: string[] };
      modes[name] = label.mode;
      assert.equal(inst.config[LABELS.guardScope], SCOPE);
      assert.equal(inst.devices.eth0?.host_name, hostVethName(name));
    }
    assert.deepEqual([modes[sb.r1], modes[sb.r2], modes[sb.a], modes[sb.o]], ['restricted', 'restricted', 'allowlist', 'open']);
    const status = await guardRequest(GuardNetworkStatus, {});
    // Pooled: the guard's refilled warm members (untaken) have rules too.
    const untaken = await untakenPoolMembers();
    assert.deepEqual(status.installed.map((s) => s.container).filter((n) => !untaken.has(n)).sort(), Object.values(sb).sort());
    assert.deepEqual(status.orphans, []);
    for (const s of status.installed) assert.equal(s.hostIface, hostVethName(s.container));
  });

  test('a second guard for the same scope (another socket) refuses to start: two would undo each other\'s rules', async () => {
    const r = spawnSync(process.execPath, [HELPER, 'guard', 'run'], { env: { ...guardEnv(), COI_GUARD_SOCKET: path.join(root, 'second.sock') }, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`another guard \\(pid ${guard!.pid}\\) already fences the sandboxes of scope "${SCOPE}"`));
  });

  test('restricted: private, metadata, CGNAT and another container refused at once; internet hosts and DNS to the gateway reached', async () => {
    const got = await expectTable(sb.r1, [
      ['private 10.99.0.2', tcp(DEAD_END_HOSTS.private), 'refused'],
      ['metadata 169.254.169.254', tcp(DEAD_END_HOSTS.metadata), 'refused'],
      ['CGNAT 100.64.0.2', tcp(DEAD_END_HOSTS.cgnat), 'refused'],
      ['another container', tcp(r2Ip, 8080), 'refused'],
      ['internet 198.51.100.2', tcp(DEAD_END_HOSTS.internet), 'connected'],
      ['internet 198.51.100.3', tcp(DEAD_END_HOSTS.internet2), 'connected'],
      ['DNS to the gateway', dnsq('10.213.0.1'), 'reply'],
    ]);
    for (const g of got.filter((x) => x.result === 'refused')) assert.ok(g.ms < 1_000, `${g.spec} refused within ${g.ms} ms`);
    // The container listener is there: the open sandbox reaches it, so the refusal above was ours.
    await expectTable(sb.o, [['another container, from the open sandbox', tcp(r2Ip, 8080), 'connected']]);
    // Each refusal is a guard event on the "network" topic, attributed by the sandbox's veth.
    const ev = await waitEvent((e) => e.container === sb.r1 && e.dst === DEAD_END_HOSTS.private, 'the private refusal');
    assert.deepEqual({ rule: ev.rule, action: ev.action, proto: ev.proto, dport: ev.dport }, { rule: 'private', action: 'reject', proto: 'tcp', dport: PORT });
    await waitEvent((e) => e.container === sb.r1 && e.rule === 'linklocal' && e.dst === DEAD_END_HOSTS.metadata, 'the metadata refusal');
    await waitEvent((e) => e.container === sb.r1 && e.rule === 'cgnat', 'the CGNAT refusal');
    await waitEvent((e) => e.container === sb.r1 && e.rule === 'private' && e.dst === r2Ip && e.dport === 8080, 'the container-to-container refusal');
  });

  test('restricted: addresses root adds inside the container (sudo ip addr add) do not bypass any rule', async () => {
    const extra = `10.213.0.${randomInt(20, 90)}`;
    const add = await c.exec(sb.r1, ['sh', '-c', `sudo -n ip addr add ${extra}/24 dev eth0 && sudo -n ip addr add 172.31.254.7/32 dev eth0`], { user: 1000, group: 1000, timeoutMs: 10_000 });
    assert.equal(add.exitCode, 0, add.stderr);
    try {
      await expectTable(sb.r1, [
        ['private from the added address', tcp(DEAD_END_HOSTS.private, PORT, extra), 'refused'],
        ['metadata from the added address', tcp(DEAD_END_HOSTS.metadata, PORT, extra), 'refused'],
        ['CGNAT from a foreign address', tcp(DEAD_END_HOSTS.cgnat, PORT, '172.31.254.7'), 'refused'],
        ['private from a foreign address', tcp(DEAD_END_HOSTS.private, PORT, '172.31.254.7'), 'refused'],
      ]);
      await waitEvent((e) => e.container === sb.r1 && e.src === extra && e.rule === 'private', 'the refusal from the added address');
    } finally {
      await c.exec(sb.r1, ['sh', '-c', `ip addr del ${extra}/24 dev eth0; ip addr del 172.31.254.7/32 dev eth0`], { timeoutMs: 10_000 });
    }
  });

  test('allowlist: only the domain (resolved by the guard, written to /etc/hosts) and the CIDR are reached; DNS is refused to every server', async () => {
    const hosts = (await c.exec(sb.a, ['cat', '/etc/hosts'])).stdout;
    assert.ok(hosts.includes(HOSTS_BEGIN), hosts);
    assert.match(hosts, new RegExp(`^${DEAD_END_HOSTS.internet.replace(/\./g, '\\.')}\\t${DOMAIN}$`, 'm'));
    assert.match(hosts, /^127\.0\.0\.1\s+localhost$/m, 'the rest of /etc/hosts is kept');
    await expectTable(sb.a, [
      ['the domain, by name', tcp(DOMAIN), 'connected'],
      ['the domain\'s address', tcp(DEAD_END_HOSTS.internet), 'connected'],
      ['the CIDR', tcp(DEAD_END_HOSTS.internet2), 'connected'],
      ['private', tcp(DEAD_END_HOSTS.private), 'refused'],
      ['metadata', tcp(DEAD_END_HOSTS.metadata), 'refused'],
      ['CGNAT', tcp(DEAD_END_HOSTS.cgnat), 'refused'],
      ['another container', tcp(r2Ip, 8080), 'refused'],
      ['DNS to the gateway', dnsq('10.213.0.1'), 'unreachable'],
      ['DNS to an allowed address', dnsq(DEAD_END_HOSTS.internet), 'unreachable'],
      ['DNS over TCP to an allowed address', tcp(DEAD_END_HOSTS.internet, 53), 'refused'],
    ]);
    await waitEvent((e) => e.container === sb.a && e.rule === 'dns' && e.dst === '10.213.0.1' && e.dport === 53, 'the refused DNS query');
    await waitEvent((e) => e.container === sb.a && e.rule === 'notallowed' && e.dst === DEAD_END_HOSTS.private, 'the refused private address');
  });

  test('allowlist: a new address of the domain is reached after its TTL, and an open connection survives the change', async () => {
    const dir = '/tmp';
    const start = await c.exec(sb.a, ['sh', '-c', `rm -f ${dir}/live.*; setsid -f /usr/local/bin/coi-live ${DOMAIN} ${PORT} ${dir} >/dev/null 2>&1 </dev/null`], { user: 1000, group: 1000, timeoutMs: 10_000 });
    assert.equal(start.exitCode, 0, start.stderr);
    let greeting = '';
    for (let i = 0; i < 50 && !greeting; i++) {
      await sleep(100);
      greeting = (await c.exec(sb.a, ['cat', `${dir}/live.greeting`])).stdout;
    }
    assert.equal(greeting, `hi ${DEAD_END_HOSTS.internet}\n`, 'the open connection goes to the domain\'s first address');
    // The domain moves to an address nothing allowed so far.
    await deadendCommand({ op: 'dns', name: DOMAIN, ips: [DEAD_END_HOSTS.private], ttl: 2 });
    const t0 = Date.now();
    let hosts = '';
    while (Date.now() - t0 < 20_000 && !hosts.includes(`${DEAD_END_HOSTS.private}\t${DOMAIN}`)) {
      await sleep(250);
      hosts = (await c.exec(sb.a, ['cat', '/etc/hosts'])).stdout;
    }
    assert.ok(hosts.includes(`${DEAD_END_HOSTS.private}\t${DOMAIN}`), `/etc/hosts shows the new address within 20 s:\n${hosts}`);
    console.log(`# the new address was picked up ${Date.now() - t0} ms after the DNS change (TTL 2 s)`);
    // No waiting here: the guard names an address in /etc/hosts only once its rules let it through.
    await expectTable(sb.a, [
      ['the new address', tcp(DEAD_END_HOSTS.private), 'connected'],
      ['the domain, by name (now the new address)', tcp(DOMAIN), 'connected'],
      ['metadata stays refused', tcp(DEAD_END_HOSTS.metadata), 'refused'],
    ]);
    // The first connection is still open although its address is on its way out.
    await c.exec(sb.a, ['touch', `${dir}/live.go`]);
    let reply = '';
    for (let i = 0; i < 50 && !reply; i++) {
      await sleep(100);
      reply = (await c.exec(sb.a, ['cat', `${dir}/live.reply`])).stdout;
    }
    assert.equal(reply, 'ping\n', 'the open connection still echoes');
    // Once TTL + grace (2 + 5 s) have passed, the old address takes no new connection.
    const deadline = Date.now() + 15_000;
    let last: Outcome = 'connected';
    while (Date.now() < deadline && last !== 'refused') {
      last = (await probe(sb.a, [tcp(DEAD_END_HOSTS.internet)]))[0]!.result;
      if (last !== 'refused') await sleep(500);
    }
    assert.equal(last, 'refused', 'the old address expires');
    // The resolution is cached on disk for a restarted guard.
    const cache = JSON.parse(readFileSync(path.join(cacheDir, `${sb.a}.json`), 'utf8')) as { names: Record<string, { current: Array<{ ip: string }> }> };
    assert.deepEqual(cache.names[DOMAIN]?.current.map((k) => k.ip), [DEAD_END_HOSTS.private]);
    // From now on a long TTL: refreshes (each one an apply) come once a minute (refresh_interval_minutes), not every 2 s.
    await deadendCommand({ op: 'dns', name: DOMAIN, ips: [DEAD_END_HOSTS.private], ttl: 3600 });
  });

  test('open: everything is reached', async () => {
    await expectTable(sb.o, [
      ['private', tcp(DEAD_END_HOSTS.private), 'connected'],
      ['metadata', tcp(DEAD_END_HOSTS.metadata), 'connected'],
      ['CGNAT', tcp(DEAD_END_HOSTS.cgnat), 'connected'],
      ['internet', tcp(DEAD_END_HOSTS.internet), 'connected'],
      ['another container', tcp(r2Ip, 8080), 'connected'],
      ['DNS to the gateway', dnsq('10.213.0.1'), 'reply'],
    ]);
  });

  test('coi run is fenced too: its command is refused the private network and reaches the internet', async () => {
    const ws = workspace('run');
    const name = containerName(PREFIX, realpathSync(ws), 1);
    const tryTcp = (h: string) => `if timeout 3 bash -c 'exec 3<>/dev/tcp/${h}/${PORT}' 2>/dev/null; then echo "${h} open"; else echo "${h} closed"; fi`;
    // The command may run before DHCP answered: wait for the address first.
    const script = `for i in $(seq 100); do ip -4 addr show eth0 | grep -q 'inet ' && break; sleep 0.1; done; ${tryTcp(DEAD_END_HOSTS.private)}; ${tryTcp(DEAD_END_HOSTS.internet)}`;
    const home = homeWith('run', '');
    await prewarm(home, ws);
    const r = await coi(['run', script], home, ws);
    assert.equal(r.code, 0, r.stderr);
    if (POOLED) assert.match(readFileSync(guardLog, 'utf8'), new RegExp(`pool: ${name} taken by pid`), 'coi run took the warm member');
    assert.equal(r.stdout, `${DEAD_END_HOSTS.private} closed\n${DEAD_END_HOSTS.internet} open\n`);
    await waitEvent((e) => e.container === name && e.rule === 'private' && e.dst === DEAD_END_HOSTS.private, 'the refusal inside coi run');
  });

  test('[[network.hosts]] and block_metadata_endpoint = false: the host is named in /etc/hosts and reached on its port only, metadata is reached, the rest of restricted holds', async () => {
    const home = homeWith(
      'hosts',
      `[network]\nblock_metadata_endpoint = false\n\n[[network.hosts]]\nip = "${DEAD_END_HOSTS.private}"\nhostnames = ["db.lan", "db"]\nports = [${PORT}]\n`,
    );
    const name = await launch(home, workspace('hosts'));
    try {
      await pushTools(name);
      await ipv4Of(name);
      const hosts = (await c.exec(name, ['cat', '/etc/hosts'])).stdout;
      assert.match(hosts, new RegExp(`^${DEAD_END_HOSTS.private.replace(/\./g, '\\.')}\\tdb\\.lan$`, 'm'), hosts);
      await expectTable(name, [
        ['the host, by name, on its port', tcp('db.lan'), 'connected'],
        ['the host, by its short name', tcp('db'), 'connected'],
        ['the metadata endpoint', tcp(DEAD_END_HOSTS.metadata), 'connected'],
        ['the host on a port not listed', tcp(DEAD_END_HOSTS.private, PORT + 2), 'refused'],
        ['CGNAT', tcp(DEAD_END_HOSTS.cgnat), 'refused'],
        ['internet', tcp(DEAD_END_HOSTS.internet), 'connected'],
      ]);
      // Refused by the guard (no listener there would refuse too): the event names the rule.
      await waitEvent((e) => e.container === name && e.rule === 'private' && e.dport === PORT + 2, 'the refusal of the host on a port not listed');
      // The other restricted sandbox is not affected by this one's exceptions.
      await expectTable(sb.r1, [
        ['metadata, from a default sandbox', tcp(DEAD_END_HOSTS.metadata), 'refused'],
        ['the host, from a default sandbox', tcp(DEAD_END_HOSTS.private), 'refused'],
      ]);
    } finally {
      await c.deleteInstance(name, { force: true });
    }
    await waitInstalled([sb.r1, sb.r2, sb.a, sb.o]);
  });

  test('a persistent sandbox is fenced while stopped, and fenced again with today\'s settings before it restarts', async () => {
    const ws = workspace('persistent');
    const home = homeWith('persistent', '');
    const first = await coi(['shell', '--background', '--persistent'], home, ws);
    assert.equal(first.code, 0, first.stderr);
    const name = first.stdout.trim();
    await pushTools(name);
    await ipv4Of(name);
    await expectTable(name, [['private (restricted)', tcp(DEAD_END_HOSTS.private), 'refused']]);
    const down = await coi(['shutdown', name], home, ws);
    assert.equal(down.code, 0, down.stderr);
    assert.ok((await installed()).includes(name), 'a stopped sandbox keeps its rules, ready for an `incus start` behind our back');
    // The user opens the network for this workspace's next session.
    writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[network]\nmode = "open"\n`);
    const second = await coi(['shell', '--background', '--persistent'], home, ws);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout.trim(), name, 'the same sandbox, restarted');
    assert.match(second.stderr, /fencing the network of .* \(open\)/);
    assert.equal(JSON.parse((await c.getInstance(name)).config[NETWORK_LABEL] ?? '{}').mode, 'open');
    await ipv4Of(name);
    await expectTable(name, [['private (open now)', tcp(DEAD_END_HOSTS.private), 'connected']]);
    const kill = await coi(['kill', name], home, ws);
    assert.equal(kill.code, 0, kill.stderr);
  });

  test('no guard, no launch: the error says so and how to fix it, and nothing is left behind', async () => {
    const ws = workspace('noguard');
    const r = await coi(['shell', '--background'], homeWith('noguard', ''), ws, { COI_GUARD_SOCKET: path.join(root, 'no-guard.sock') });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /guard must fence its network first/);
    assert.match(r.stderr, /sudo coi guard start/);
    const left = (await c.listInstances({ recursion: 1 })).filter((i) => i.config[LABELS.workspace] === ws);
    assert.deepEqual(left.map((i) => i.name), []);
  });

  test('a guard killed (-9) in the middle of an apply leaves the old rules; restarted, it repairs what changed meanwhile', async () => {
    // Deleted behind the guard's back: the apply that drops it stalls inside "nft", after the guard rendered it and
    // wrote it out, before the kernel committed anything. That is when the guard is killed.
    const nftPid = await stallApply('without', sb.r2, () => c.deleteInstance(sb.r2, { force: true }));
    const script = readFileSync(inApplyScript, 'utf8');
    assert.ok(script.includes(`key=${sb.r1} `) && !script.includes(`key=${sb.r2} `), 'the stalled apply is the one that drops the deleted sandbox');
    assert.ok((await installed()).includes(sb.r2), 'and it has not committed yet');
    stopEvents();
    guard!.kill('SIGKILL');
    await new Promise((r) => guard!.once('exit', r));
    // Its nft dies with it (as it would when the whole service is killed): the transaction never reaches the kernel.
    process.kill(nftPid, 'SIGKILL');
    releaseApply();
    assert.ok((await installed()).includes(sb.r2), 'the apply never happened: the old rules are still there');
    assert.ok(ourRulesetText().includes(`key=${sb.r1} `), 'the old rules are whole, not a partial apply');
    // More changes while no guard runs: a sandbox created (not started).
    const ghost = await createLabelled('down');
    const t0 = Date.now();
    await startGuard();
    console.log(`# restarted guard answered ${Date.now() - t0} ms after start`);
    await waitServed('guard start');
    const now = await installed();
    assert.deepEqual(now, [sb.r1, sb.a, sb.o, ghost].sort(), 'the restarted guard removed the deleted sandbox\'s rules and added the new one\'s');
    assert.ok(!namesInRuleset().has(sb.r2), `nothing of ${sb.r2} is left`);
    await expectTable(sb.r1, [
      ['private still refused', tcp(DEAD_END_HOSTS.private), 'refused'],
      ['internet still reached', tcp(DEAD_END_HOSTS.internet), 'connected'],
    ]);
    await c.deleteInstance(ghost, { force: true });
    await waitServed(`instance-deleted ${ghost}`);
  });

  test('a sandbox deleted while the apply that installs its rules is still running loses them with the next apply', async () => {
    // Created behind the guard's back (its creation event starts an apply), then deleted while that apply, whose
    // listing still had it, sits in nft: the deletion event comes before the guard knows the sandbox as its own.
    const name = `${PREFIX}gone-early`;
    let created = '';
    await stallApply('with', name, async () => (created = await createLabelled('gone-early', 'restricted', true)));
    assert.equal(created, name);
    await c.deleteInstance(name, { force: true });
    await waitPending(`instance-deleted ${name}`);
    releaseApply();
    await waitServed(`instance-deleted ${name}`);
    assert.ok(!namesInRuleset().has(name), `nothing of ${name} is left`);
    assert.deepEqual(await installed(), await liveInScope());
  });

  test('coi clean --orphans removes rules of sandboxes that no longer exist', async () => {
    // The guard has settled (the last test's deletion applied, the allowlist refreshed with its long TTL) before we
    // plant anything: its next apply would remove the plant itself, which is right, but not what this test shows.
    // Pooled: a refilling pool applies again and again (a member created, fenced, started); stop it first.
    if (POOLED) await guardRequest(GuardPoolDrain, {});
    await waitInstalled([sb.r1, sb.a, sb.o]);
    await sleep(3_000);
    // What a crash could leave: a chain of a sandbox that is gone (put there behind the guard's back).
    const ghost = `${PREFIX}ghost-1`;
    const add = spawnSync('nft', ['-f', '-'], {
      input: `add chain netdev ${TABLES.ingress} in_${ghost} { type filter hook ingress device "coighost1" priority -500; policy accept; }\nadd rule netdev ${TABLES.ingress} in_${ghost} counter comment "coi:sandbox key=${ghost} iface=coighost1 mode=restricted"\n`,
      encoding: 'utf8',
    });
    assert.equal(add.status, 0, add.stderr);
    const home = homeWith('clean', '');
    const dry = await coi(['clean', '--orphans', '--dry-run'], home, root);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, new RegExp(`would remove the network rules of ${ghost}`));
    assert.ok((await installed()).includes(ghost), 'a dry run changes nothing');
    const real = await coi(['clean', '--orphans'], home, root);
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stdout, new RegExp(`removed the network rules of ${ghost}`));
    assert.deepEqual(await installed(), [sb.r1, sb.a, sb.o].sort());
    const again = await coi(['clean', '--orphans'], home, root);
    assert.match(again.stdout, /no orphaned network rules/);
  });

  /*
   * Each of the 200 is a sandbox as a launch makes it, through the guard as a launch goes: the instance is created
   * from the very spec `coi shell` builds (buildInstanceSpec: labels, the network label, the NIC's fixed host_name,
   * the guard scope), secured through the guard's socket with the request a launch sends before it starts a sandbox
   * (GuardSecureSandbox, answered once an apply whose Incus listing has it is in the kernel), and deleted through Incus, whose event
   * alone makes the guard drop its rules, as after `coi kill` or an `incus delete` behind our back. What a launch does
   * besides (the workspace mount, the home, waiting for systemd to boot, the agent's session) the guard never sees,
   * and would make 200 launches take 10+ minutes: so most are created empty (no root filesystem, never started),
   * and every 20th from the image and started, so that a real veth appears under its rules and goes.
   */
  test(`after ${CHURN} sandboxes launched (created, fenced through the guard) and killed one after another, no chain, set or rule of any of them is left`, async () => {
    const live = await liveInScope();
    assert.deepEqual(await installed(), live, 'before: exactly the live sandboxes have rules');
    const t0 = Date.now();
    const names: string[] = [];
    let maxInstalled = 0;
    const spent = { create: 0, secure: 0, start: 0, delete: 0 };
    const g = new GuardClient({ socketPath });
    await g.connect({ timeoutMs: 3_000 });
    try {
      for (let i = 0; i < CHURN; i++) {
        const mode = (['restricted', 'allowlist', 'open'] as const)[i % 3]!;
        const started = i % 20 === 0;
        let t = Date.now();
        const name = await createLabelled(`c${i}`, mode, !started);
        names.push(name);
        spent.create += Date.now() - t;
        t = Date.now();
        const r = await g.request(GuardSecureSandbox, { name });
        assert.equal(r.mode, mode);
        spent.secure += Date.now() - t;
        if (started) {
          t = Date.now();
          await c.setState(name, 'start', { timeoutMs: 60_000 });
          spent.start += Date.now() - t;
        }
        if (i % 25 === 0) maxInstalled = Math.max(maxInstalled, (await installed()).length);
        t = Date.now();
        await c.deleteInstance(name, { force: true });
        spent.delete += Date.now() - t;
      }
    } finally {
      g.close();
    }
    const ms = Date.now() - t0;
    const avg = (x: number, n = names.length) => Math.round(x / n);
    console.log(
      `# churn: ${names.length} sandboxes in ${ms} ms (${avg(ms)} ms each: create ${avg(spent.create)}, secure ${avg(spent.secure)}, delete ${avg(spent.delete)}; start ${avg(spent.start, Math.ceil(names.length / 20))} for each started one); at most ${maxInstalled} sandboxes had rules at once`,
    );
    assert.ok(maxInstalled <= live.length + 1, `rules never accumulated (${maxInstalled} sandboxes at most: ${live.length} live + 1 churning)`);
    // The guard drops each one's rules on its deletion event: wait for the apply that served the last one.
    await waitServed(`instance-deleted ${names[names.length - 1]}`);
    const rules = await listInstalledRules(nftExec(), TABLES);
    assert.deepEqual(rules.sandboxes.map((s) => s.key), live, 'only the live sandboxes have rules');
    assert.deepEqual(rules.unknown, [], 'no object of ours that belongs to no sandbox');
    const inRuleset = namesInRuleset();
    assert.deepEqual(names.filter((n) => inRuleset.has(n)), [], 'no name of a deleted sandbox anywhere in our tables');
    assert.deepEqual([...inRuleset].sort(), live, 'only names of live sandboxes');
    const status = await guardRequest(GuardNetworkStatus, {});
    assert.deepEqual(status.orphans, []);
    assert.deepEqual(readdirJson(cacheDir).sort(), live.filter((n) => n === sb.a).map((n) => `${n}.json`), 'allowlist caches of deleted sandboxes are gone');
  });

  test('with firewalld running, the guard puts the bridge in a zone that passes it; restricted mode holds, also after firewall-cmd --reload; coi health says what firewalld would block', async () => {
    let t = Date.now();
    const lap = (what: string) => {
      console.log(`# firewalld: ${what} in ${Date.now() - t} ms`);
      t = Date.now();
    };
    const bridge = SETUP_NAMES.bridge;
    // Default zone public, as on Fedora or RHEL: a bridge left in it has its DHCP, DNS and forwarded traffic rejected.
    const startedAt = new Date().toISOString();
    const fw = await startFirewalld('public');
    lap('started');
    const zoneOf = (permanent: boolean) => sh('firewall-cmd', [...(permanent ? ['--permanent'] : []), `--get-zone-of-interface=${bridge}`]).stdout.trim();
    const home = homeWith('fw', '');
    const health = async () => {
      const r = await coi(['health', '--format', 'json', '--no-live'], home, root, {}, 120_000);
      return (JSON.parse(r.stdout) as { checks: Record<string, { status: string; message: string }> }).checks.firewalld!;
    };
    try {
      // The guard sees the new firewalld within its poll and binds the bridge, now and in the permanent configuration.
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && zoneOf(false) !== 'trusted') await sleep(250);
      assert.equal(zoneOf(false), 'trusted', `the guard put ${bridge} in the trusted zone`);
      assert.equal(zoneOf(true), 'trusted', 'also in the permanent configuration, which a reload keeps');
      // Every guard on the host watches firewalld: the host's own guard (if one runs) may bind the bridge first.
      const logs = [guardLog, DEFAULT_GUARD_LOG]
        .filter((f) => existsSync(f))
        .flatMap((f) => readFileSync(f, 'utf8').split('\n'))
        .filter((l) => l.slice(0, 24) >= startedAt)
        .join('\n');
      assert.match(logs, new RegExp(`firewalld runs: ${bridge} is now in its "trusted" zone`));
      lap('bridge bound by the guard');
      const rows: Array<[string, string, Outcome]> = [
        ['private', tcp(DEAD_END_HOSTS.private), 'refused'],
        ['metadata', tcp(DEAD_END_HOSTS.metadata), 'refused'],
        ['internet', tcp(DEAD_END_HOSTS.internet), 'connected'],
        ['DNS to the gateway', dnsq('10.213.0.1'), 'reply'],
      ];
      await expectTable(sb.r1, rows);
      const ok = await health();
      assert.equal(ok.status, 'ok', ok.message);
      assert.match(ok.message, /in the zone "trusted", which passes sandbox traffic/);
      lap('probed, health ok');
      // An administrator takes the bridge out of the zone at runtime: firewalld now rejects DNS to the host, and
      // health says so. (This also shows the rows above depend on the guard's binding.)
      assert.equal(sh('firewall-cmd', [`--zone=trusted`, `--remove-interface=${bridge}`]).status, 0);
      try {
        const dns = (await probe(sb.r1, [dnsq('10.213.0.1')]))[0]!.result;
        assert.notEqual(dns, 'reply', 'firewalld\'s public zone rejects DNS from the sandboxes to the host');
        const warn = await health();
        assert.equal(warn.status, 'warning');
        assert.match(warn.message, new RegExp(`${bridge} is in no zone of its own, so in the default zone "public".*firewalld would block: DHCP .*; DNS `));
      } finally {
        // A reload restores the permanent configuration: the binding is back.
        const reload = sh('firewall-cmd', ['--reload'], 60_000);
        assert.equal(reload.status, 0, `firewall-cmd --reload: ${reload.stderr}`);
      }
      lap('unbound, health warned, reloaded');
      assert.equal(zoneOf(false), 'trusted', 'the reload kept the permanent binding');
      await expectTable(sb.r1, rows);
      lap('probed again');
      const live = (await c.listInstances({ recursion: 1 })).filter((i) => i.name.startsWith(PREFIX)).map((i) => i.name);
      assert.deepEqual(await installed(), live.sort(), 'our tables are untouched by the reload');
      // A sandbox launched while firewalld runs gets its address (DHCP) and is fenced too.
      const late = await launch(homeWith('late', ''), workspace('late'));
      await pushTools(late);
      await ipv4Of(late);
      await expectTable(late, rows);
      lap('launched and probed a new sandbox');
      await c.deleteInstance(late, { force: true });
    } finally {
      await fw.stop();
      lap('stopped');
    }
    await expectTable(sb.r1, [['private after firewalld stopped', tcp(DEAD_END_HOSTS.private), 'refused']]);
  });
});

// ── helpers that need the test's state ──────────────────────────────────────

function readdirJson(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
}

/** An instance exactly as a launch creates it (labels, NIC host_name), through the Incus API, not started. */
async function createLabelled(tag: string, mode: 'restricted' | 'allowlist' | 'open' = 'restricted', empty = false): Promise<string> {
  const name = `${PREFIX}${tag}`;
  const spec = buildInstanceSpec({
    name,
    image: SETUP_NAMES.baseImage,
    pool: SETUP_NAMES.pool,
    bridge: SETUP_NAMES.bridge,
    workspace: root,
    slot: 1,
    kind: 'shell',
    tool: 'shell',
    persistent: false,
    session: 'churn',
    profile: 'default',
    ownerUid: 0,
    ownerHome: '/root',
    launcherPid: process.pid,
    idmap: { kind: 'shift' },
    protectedPaths: [],
    mounts: [],
    nesting: false,
    now: new Date(),
    network: mode === 'allowlist' ? { ...DEFAULT_NETWORK, mode, cidrs: ['198.51.100.3/32'] } : { ...DEFAULT_NETWORK, mode },
    guardScope: SCOPE,
  });
  // No workspace disk: the churn needs the NIC and the labels, not the mount.
  delete spec.devices!.workspace;
  // Marked "ready" so the guard's reaper never races the test for it.
  spec.config![LABELS.phase] = 'ready';
  spec.config![LABELS.persistent] = 'true';
  if (empty) spec.source = { type: 'none' };
  await c.createInstance(spec, { timeoutMs: 60_000 });
  return name;
}

/**
 * firewalld with a configuration of its own (in this test's directory, so its permanent changes vanish with it),
 * on the system bus; stopped with SIGTERM. Whatever the default zone, the interface of the default route is in
 * the trusted zone: this machine's own inbound traffic (its control service) must never be rejected.
 */
async function startFirewalld(defaultZone: string): Promise<{ stop: () => Promise<void> }> {
  assert.equal(sh('sh', ['-c', 'command -v firewalld && command -v firewall-cmd']).status, 0, 'firewalld is not installed: bash .ci/install-firewalld.sh');
  const others = sh('pgrep', ['-x', 'firewalld']).stdout.trim();
  assert.equal(others, '', `another firewalld is running (pid ${others}); this test starts and stops its own`);
  // A bridge binding saved by an earlier firewalld run (another test's, whose guard bound it) would make this
  // one start with the bridge already passed: the test is about the guard doing it.
  const saved = sh('firewall-offline-cmd', [`--get-zone-of-interface=${SETUP_NAMES.bridge}`]).stdout.trim();
  if (saved && saved !== 'no zone') sh('firewall-offline-cmd', [`--zone=${saved}`, `--remove-interface=${SETUP_NAMES.bridge}`]);
  let dbusPid: number | undefined;
  if (!existsSync('/run/dbus/system_bus_socket') || sh('dbus-send', ['--system', '--print-reply', '--dest=org.freedesktop.DBus', '/', 'org.freedesktop.DBus.GetId']).status !== 0) {
    // No bus answers: whatever a previous bus left (its socket, its pid file) is stale.
    mkdirSync('/run/dbus', { recursive: true });
    rmSync('/run/dbus/system_bus_socket', { force: true });
    rmSync('/run/dbus/pid', { force: true });
    const d = sh('dbus-daemon', ['--system', '--fork', '--print-pid']);
    assert.equal(d.status, 0, `dbus-daemon: ${d.stderr}`);
    dbusPid = Number(d.stdout.trim().split('\n')[0]);
  }
  const conf = path.join(root, 'firewalld');
  mkdirSync(conf, { recursive: true });
  writeFileSync(path.join(conf, 'firewalld.conf'), `DefaultZone=${defaultZone}\nCleanupOnExit=yes\nFirewallBackend=nftables\nFlushAllOnReload=yes\nLogDenied=off\nIPv6_rpfilter=yes\n`);
  const uplinks = [...new Set(sh('ip', ['-j', 'route', 'show', 'default']).stdout.match(/"dev":"[^"]+"/g) ?? [])].map((m) => m.slice(7, -1));
  assert.ok(uplinks.length > 0, 'the default route\'s interface is known');
  mkdirSync(path.join(conf, 'zones'), { recursive: true });
  writeFileSync(
    path.join(conf, 'zones', 'trusted.xml'),
    `<?xml version="1.0" encoding="utf-8"?>\n<zone target="ACCEPT">\n  <short>Trusted</short>\n${uplinks.map((u) => `  <interface name="${u}"/>\n`).join('')}</zone>\n`,
  );
  const fd = openSync(path.join(root, 'firewalld.log'), 'a');
  const fw = spawn('firewalld', ['--nofork', '--nopid', '--system-config', conf, '--log-target', 'console'], { stdio: ['ignore', fd, fd] });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && sh('firewall-cmd', ['--state']).stdout.trim() !== 'running') {
    assert.equal(fw.exitCode, null, `firewalld exited: ${readFileSync(path.join(root, 'firewalld.log'), 'utf8')}`);
    await sleep(200);
  }
  assert.equal(sh('firewall-cmd', ['--state']).stdout.trim(), 'running', 'firewalld is running');
  assert.ok(sh('nft', ['list', 'tables']).stdout.includes('inet firewalld'), 'firewalld installed its table');
  return {
    stop: async () => {
      if (fw.exitCode === null) {
        fw.kill('SIGTERM');
        const t = setTimeout(() => fw.kill('SIGKILL'), 15_000);
        await new Promise((r) => fw.once('exit', r));
        clearTimeout(t);
      }
      if (dbusPid) {
        try {
          process.kill(dbusPid, 'SIGTERM');
        } catch {
          // already gone
        }
        for (let i = 0; i < 50 && sh('kill', ['-0', String(dbusPid)]).status === 0; i++) await sleep(100);
        rmSync('/run/dbus/pid', { force: true });
        rmSync('/run/dbus/system_bus_socket', { force: true });
      }
    },
  };
}
