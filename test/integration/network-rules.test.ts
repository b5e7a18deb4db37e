/**
 * The rendered nft rules against the real kernel, in a throw-away topology of
 * network namespaces that never reaches beyond this machine:
 *
 *   ns A ("container a", 10.250.0.10) ─ eth0 ══ vcoi-a ─┐
 *                                                        ├ br0 (10.250.0.1, fd00:99::1)  ns ROUTER
 *   ns B ("container b", 10.250.0.11) ─ eth0 ══ vcoi-b ─┘   up0 10.251.0.1 ══ down0 10.251.0.2  ns SERVER
 *
 * ROUTER plays the host: our tables are loaded there (`ip netns exec ROUTER nft -f -`),
 * br0 is the Incus bridge and its address the containers' gateway (DNS on :53, a
 * "host service" on :80); vcoi-a/vcoi-b are the fixed host-side veth names. Its only
 * route out leads to SERVER, which owns every test destination on its loopback:
 * 10.99.0.2 (private LAN), 169.254.169.254 (metadata), 100.64.0.2 (CGNAT),
 * 198.51.100.2 and .3 ("internet"), with TCP/UDP listeners. SERVER does not forward.
 * br_netfilter is on in ROUTER, as on the host, so A→B crosses the inet forward hook.
 *
 * Every connection attempt is bounded; every namespace and process is removed in
 * after(), and namespaces left by a killed run are removed at the start.
 */
import { strict as assert } from 'node:assert';
import { ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { CoiError, ErrorCodes } from '../../helper/errors';
import { PacketEvent, parsePacketLogLine } from '../../helper/guard/network/kmsg';
import { applyRuleset, checkRuleset, listInstalledRules, NftExec, nftExec, removeAllRules } from '../../helper/guard/network/nft';
import { findOrphans } from '../../helper/guard/network/parse';
import { renderRuleset } from '../../helper/guard/network/render';
import type { NetworkState, SandboxNetwork } from '../../helper/guard/network/types';

const NS_PREFIX = 'coi-nrt-';
const run = randomBytes(3).toString('hex');
const NS = { router: `${NS_PREFIX}${run}-r`, server: `${NS_PREFIX}${run}-s`, a: `${NS_PREFIX}${run}-a`, b: `${NS_PREFIX}${run}-b` };
/** Container names carry the run id so our lines in the (global) kernel log are told apart. */
const A = `nrt${run}-a`;
const B = `nrt${run}-b`;
const GW = '10.250.0.1';
const IP_A = '10.250.0.10';
const IP_B = '10.250.0.11';
const PROBE_MS = 1500;

const nft: NftExec = nftExec({ netns: NS.router, timeoutMs: 15_000 });
const children: ChildProcessWithoutNullStreams[] = [];
let agentA: Agent;
let agentB: Agent;
let kmsg: KmsgReader | undefined;
let savedLogAllNetns: string | undefined;
const LOG_ALL_NETNS = '/proc/sys/net/netfilter/nf_log_all_netns';
/** The value found before we changed it, kept on disk so the next run can restore it after a kill -9. */
const LOG_ALL_NETNS_SAVED = '/run/coi-nrt-nf_log_all_netns.saved';

// ── processes ────────────────────────────────────────────────────────────────

function sh(cmd: string, args: string[], okCodes = [0]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
  if (r.error) throw r.error;
  if (!okCodes.includes(r.status ?? -1)) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}
const ip = (...args: string[]): string => sh('ip', args);
const inNs = (ns: string, ...args: string[]): string => sh('ip', ['netns', 'exec', ns, ...args]);

/** Listeners: TCP greets with "hi" and echoes; UDP answers "pong". Exits when its stdin closes (the test died). */
const LISTENER = `
const net = require('net'), dgram = require('dgram');
const specs = JSON.parse(process.argv[1]);
let pending = specs.length;
const ready = () => { if (--pending === 0) process.stdout.write('ready\\n'); };
for (const s of specs) {
  if (s.proto === 'tcp') {
    const srv = net.createServer((c) => { c.on('error', () => {}); c.write('hi\\n'); c.on('data', (d) => c.write(d)); });
    srv.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(3); });
    srv.listen(s.port, s.host, ready);
  } else {
    const u = dgram.createSocket(s.host.includes(':') ? 'udp6' : 'udp4');
    u.on('message', (m, r) => u.send('pong', r.port, r.address));
    u.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(3); });
    u.bind(s.port, s.host, ready);
  }
}
process.stdin.on('end', () => process.exit(0)); process.stdin.resume();
`;

/**
 * The "container" side: one long-lived process per namespace taking JSON
 * commands on stdin. probe = one bounded connection attempt; open/echo keep a
 * TCP connection to show live connections survive rule changes.
 */
const AGENT = `
const net = require('net'), dgram = require('dgram'), readline = require('readline');
const conns = new Map();
const classify = (c) => c === 'ECONNREFUSED' ? 'refused' : (c === 'EHOSTUNREACH' || c === 'ENETUNREACH') ? 'unreachable' : 'error:' + c;
function probe(p) {
  return new Promise((resolve) => {
    const t0 = Date.now(); let fin = false; let t; let close = () => {};
    const end = (r) => { if (fin) return; fin = true; clearTimeout(t); close(); resolve({ ...r, ms: Date.now() - t0 }); };
    t = setTimeout(() => end({ result: 'timeout' }), p.timeoutMs);
    if (p.proto === 'tcp') {
      const s = net.connect({ host: p.host, port: p.port, ...(p.from ? { localAddress: p.from } : {}) });
      close = () => s.destroy();
      s.on('connect', () => end({ result: 'connected' }));
      s.on('error', (e) => end({ result: classify(e.code) }));
    } else {
      const u = dgram.createSocket(p.host.includes(':') ? 'udp6' : 'udp4');
      close = () => { try { u.close(); } catch {} };
      u.on('error', (e) => end({ result: classify(e.code) }));
      u.on('message', () => end({ result: 'reply' }));
      u.bind(p.from ? { address: p.from } : {}, () => u.connect(p.port, p.host, (err) => {
        if (err) return end({ result: classify(err.code) });
        u.send('ping', (e) => { if (e) end({ result: classify(e.code) }); });
      }));
    }
  });
}
function firstData(s, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(() => { s.off('data', on); resolve(null); }, ms);
    const on = (d) => { clearTimeout(t); s.off('data', on); resolve(d.toString()); };
    s.on('data', on);
  });
}
async function handle(m) {
  if (m.op === 'probe') return { results: await Promise.all(m.probes.map(probe)) };
  if (m.op === 'open') {
    const s = net.connect({ host: m.host, port: m.port }); s.on('error', () => {});
    const greeting = await firstData(s, m.timeoutMs);
    conns.set(m.id, s);
    return { greeting };
  }
  if (m.op === 'echo') {
    const s = conns.get(m.id); if (!s || s.destroyed) return { reply: null };
    const p = firstData(s, m.timeoutMs); s.write(m.text); return { reply: await p };
  }
  if (m.op === 'close') { conns.get(m.id)?.destroy(); conns.delete(m.id); return {}; }
  return { error: 'unknown op' };
}
readline.createInterface({ input: process.stdin }).on('line', async (l) => {
  const m = JSON.parse(l); const r = await handle(m); process.stdout.write(JSON.stringify({ seq: m.seq, ...r }) + '\\n');
});
process.stdin.on('end', () => process.exit(0));
`;

function startInNs(ns: string, code: string, arg: string): ChildProcessWithoutNullStreams {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code, arg], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  child.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(`[${ns}] ${d}`));
  return child;
}

function waitForLine(child: ChildProcessWithoutNullStreams, line: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`no "${line}" within ${ms} ms`)), ms);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      if (buf.split('\n').includes(line)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code} before "${line}"`)));
  });
}

async function listen(ns: string, specs: Array<{ proto: 'tcp' | 'udp'; host: string; port: number }>): Promise<void> {
  await waitForLine(startInNs(ns, LISTENER, JSON.stringify(specs)), 'ready', 10_000);
}

type Outcome = 'connected' | 'reply' | 'refused' | 'unreachable' | 'timeout' | `error:${string}`;
interface Probe {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  from?: string;
  timeoutMs?: number;
}

class Agent {
  private seq = 0;
  private readonly waiting = new Map<number, (v: Record<string, unknown>) => void>();
  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    let buf = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const msg = JSON.parse(line) as { seq: number } & Record<string, unknown>;
        this.waiting.get(msg.seq)?.(msg);
        this.waiting.delete(msg.seq);
      }
    });
  }
  call(msg: Record<string, unknown>, ms: number): Promise<Record<string, unknown>> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`agent did not answer ${JSON.stringify(msg)} within ${ms} ms`)), ms);
      this.waiting.set(seq, (v) => {
        clearTimeout(t);
        resolve(v);
      });
      this.child.stdin.write(`${JSON.stringify({ ...msg, seq })}\n`);
    });
  }
  async probe(probes: Probe[]): Promise<Outcome[]> {
    const timeoutMs = Math.max(...probes.map((p) => p.timeoutMs ?? PROBE_MS));
    const r = await this.call({ op: 'probe', probes: probes.map((p) => ({ timeoutMs: PROBE_MS, ...p })) }, timeoutMs + 5_000);
    return (r.results as Array<{ result: Outcome }>).map((x) => x.result);
  }
  async probeTimed(p: Probe): Promise<{ result: Outcome; ms: number }> {
    const r = await this.call({ op: 'probe', probes: [{ timeoutMs: PROBE_MS, ...p }] }, (p.timeoutMs ?? PROBE_MS) + 5_000);
    return (r.results as Array<{ result: Outcome; ms: number }>)[0]!;
  }
}

/** Asserts a table of destination → outcome, naming each row that differs. */
async function expectTable(agent: Agent, rows: Array<[string, Probe, Outcome]>): Promise<void> {
  const got = await agent.probe(rows.map((r) => r[1]));
  const diffs = rows.map((r, i) => [r[0], r[2], got[i]] as const).filter(([, want, have]) => want !== have);
  assert.deepEqual(diffs, [], `destinations with unexpected outcomes (name, expected, got):\n${diffs.map((d) => d.join('  ')).join('\n')}`);
}

// ── kernel log ───────────────────────────────────────────────────────────────

/** Reads new /dev/kmsg records (the fd is opened once, so only records after that). */
class KmsgReader {
  private readonly fd = fs.openSync('/dev/kmsg', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  private readonly buf = Buffer.alloc(16 * 1024);
  readonly events: PacketEvent[] = [];
  constructor() {
    this.drain();
    this.events.length = 0;
  }
  drain(): void {
    for (;;) {
      try {
        const n = fs.readSync(this.fd, this.buf, 0, this.buf.length, null);
        const ev = parsePacketLogLine(this.buf.toString('utf8', 0, n));
        if (ev) this.events.push(ev);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return;
        if (code === 'EPIPE') continue; // records overwritten while we read: skip ahead
        throw e;
      }
    }
  }
  async waitFor(match: (e: PacketEvent) => boolean, ms = 3_000): Promise<PacketEvent> {
    const deadline = Date.now() + ms;
    for (;;) {
      this.drain();
      const found = this.events.find(match);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching kernel log line within ${ms} ms; ours so far: ${JSON.stringify(this.events.filter((e) => e.container.startsWith(`nrt${run}`)))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

// ── state helpers ────────────────────────────────────────────────────────────

function sandbox(container: string, hostIface: string, over: Partial<SandboxNetwork> = {}): SandboxNetwork {
  return { container, hostIface, mode: 'restricted', gatewayV4: GW, allowLocalNetwork: false, allowCidrs: [], resolvedIps: [], ...over };
}
async function apply(state: NetworkState): Promise<void> {
  await applyRuleset(renderRuleset(state, { now: Date.now() }), nft);
}

const tcp = (host: string, port = 80, extra: Partial<Probe> = {}): Probe => ({ proto: 'tcp', host, port, ...extra });
const udp = (host: string, port = 53, extra: Partial<Probe> = {}): Probe => ({ proto: 'udp', host, port, ...extra });

// ── topology ────────────────────────────────────────────────────────────────

function removeStaleNamespaces(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    // Only ours, and only if nothing runs in it any more (a concurrent run's are busy).
    if (name.startsWith(NS_PREFIX) && sh('ip', ['netns', 'pids', name]).trim() === '') ip('netns', 'del', name);
  }
}

function buildTopology(): void {
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  // Router = the host: bridge with the gateway address, forwarding on, br_netfilter calling the inet hooks.
  // A fixed MAC, as Incus gives its bridges: otherwise the bridge takes its lowest port's MAC and
  // changes it when a veth is re-created, and the other "containers" keep ARPing the old one.
  ip('-n', NS.router, 'link', 'add', 'br0', 'address', '02:c0:1e:00:00:01', 'type', 'bridge');
  ip('-n', NS.router, 'addr', 'add', `${GW}/24`, 'dev', 'br0');
  ip('-n', NS.router, 'addr', 'add', 'fd00:99::1/64', 'dev', 'br0', 'nodad');
  ip('-n', NS.router, 'link', 'set', 'br0', 'up');
  inNs(NS.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.bridge.bridge-nf-call-iptables=1');
  for (const [ns, iface, addr, v6] of [
    [NS.a, 'vcoi-a', IP_A, 'fd00:99::10'],
    [NS.b, 'vcoi-b', IP_B, 'fd00:99::11'],
  ] as const) {
    ip('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', iface, 'netns', NS.router);
    ip('-n', NS.router, 'link', 'set', iface, 'master', 'br0', 'up');
    ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0');
    ip('-n', ns, 'addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'route', 'add', 'default', 'via', GW);
  }
  // Router's only way out leads to the server, which owns every test destination and forwards nothing.
  ip('link', 'add', 'up0', 'netns', NS.router, 'type', 'veth', 'peer', 'name', 'down0', 'netns', NS.server);
  ip('-n', NS.router, 'addr', 'add', '10.251.0.1/30', 'dev', 'up0');
  ip('-n', NS.router, 'link', 'set', 'up0', 'up');
  ip('-n', NS.router, 'route', 'add', 'default', 'via', '10.251.0.2');
  ip('-n', NS.server, 'addr', 'add', '10.251.0.2/30', 'dev', 'down0');
  ip('-n', NS.server, 'link', 'set', 'down0', 'up');
  for (const a of ['10.99.0.2', '169.254.169.254', '100.64.0.2', '198.51.100.2', '198.51.100.3']) ip('-n', NS.server, 'addr', 'add', `${a}/32`, 'dev', 'lo');
  ip('-n', NS.server, 'route', 'add', '10.250.0.0/24', 'via', '10.251.0.1');
  inNs(NS.server, 'sysctl', '-qw', 'net.ipv4.ip_forward=0');
}

function restoreVethA(): void {
  // What a container restart does to the host side: the veth disappears and a new one of the same name appears.
  ip('-n', NS.router, 'link', 'del', 'vcoi-a');
  ip('link', 'add', 'eth0', 'netns', NS.a, 'type', 'veth', 'peer', 'name', 'vcoi-a', 'netns', NS.router);
  ip('-n', NS.router, 'link', 'set', 'vcoi-a', 'master', 'br0', 'up');
  ip('-n', NS.a, 'addr', 'add', `${IP_A}/24`, 'dev', 'eth0');
  ip('-n', NS.a, 'link', 'set', 'eth0', 'up');
  ip('-n', NS.a, 'route', 'add', 'default', 'via', GW);
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the network-rules integration test needs root (network namespaces, nft, /dev/kmsg)');
  sh('nft', ['--version']);
  removeStaleNamespaces();
  buildTopology();
  const hosts = ['10.99.0.2', '169.254.169.254', '100.64.0.2', '198.51.100.2', '198.51.100.3'];
  await listen(NS.server, [
    ...hosts.flatMap((h) => [
      { proto: 'tcp' as const, host: h, port: 80 },
      { proto: 'tcp' as const, host: h, port: 53 },
      { proto: 'udp' as const, host: h, port: 53 },
    ]),
    { proto: 'tcp', host: '198.51.100.2', port: 8080 },
  ]);
  await listen(NS.router, [
    { proto: 'tcp', host: GW, port: 53 },
    { proto: 'udp', host: GW, port: 53 },
    { proto: 'tcp', host: GW, port: 80 },
    { proto: 'tcp', host: 'fd00:99::1', port: 80 },
  ]);
  await listen(NS.b, [{ proto: 'tcp', host: IP_B, port: 80 }]);
  agentA = new Agent(startInNs(NS.a, AGENT, ''));
  agentB = new Agent(startInNs(NS.b, AGENT, ''));
  // The kernel logs netfilter lines from network namespaces other than the host's only with
  // nf_log_all_netns=1. The guard's rules live in the host namespace and need no such thing;
  // the test turns it on for its own namespaces and restores the old value afterwards.
  if (fs.existsSync(LOG_ALL_NETNS_SAVED)) fs.writeFileSync(LOG_ALL_NETNS, fs.readFileSync(LOG_ALL_NETNS_SAVED, 'utf8').trim());
  savedLogAllNetns = fs.readFileSync(LOG_ALL_NETNS, 'utf8').trim();
  fs.writeFileSync(LOG_ALL_NETNS_SAVED, savedLogAllNetns);
  fs.writeFileSync(LOG_ALL_NETNS, '1');
  kmsg = new KmsgReader();
});

after(async () => {
  if (savedLogAllNetns !== undefined) {
    fs.writeFileSync(LOG_ALL_NETNS, savedLogAllNetns);
    fs.rmSync(LOG_ALL_NETNS_SAVED, { force: true });
  }
  kmsg?.close();
  for (const c of children) c.stdin.end();
  await new Promise((r) => setTimeout(r, 200));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns], { timeout: 15_000 });
});

// ── tests ────────────────────────────────────────────────────────────────────

describe('network rules in a namespace topology', () => {
  test('rendered scripts pass the kernel\'s own check (nft -c), and a bad one is refused with nft\'s message', async () => {
    const state: NetworkState = {
      sandboxes: [
        sandbox(A, 'vcoi-a'),
        sandbox(B, 'vcoi-b', { mode: 'allowlist', allowCidrs: ['198.51.100.0/24', '10.0.0.0/8', '10.5.0.0/16'], resolvedIps: [{ ip: '198.51.100.2', expiresAt: Date.now() + 60_000 }], allowedPorts: [80, 443] }),
        sandbox('open-one', 'vcoi-o', { mode: 'open', gatewayV4: '' }),
        sandbox('evil"; flush ruleset; "', 'vcoi-e', { allowLocalNetwork: true }),
      ],
      blockAll: [{ container: 'booting', hostIface: 'vcoi-n' }],
    };
    await checkRuleset(renderRuleset(state, { now: Date.now() }), nft);
    await checkRuleset(renderRuleset({ sandboxes: [], blockAll: [] }, { now: Date.now() }), nft);
    await assert.rejects(checkRuleset('table inet coi_guard {\n\tchain c { jump nowhere\n\t}\n}\n', nft), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.COMMAND_FAILED && /Error:/.test(e.message));
    const listed = await listInstalledRules(nft);
    assert.deepEqual(listed.tables, [], 'nft -c changed nothing');
  });

  test('without rules every destination is reachable (the topology works, so blocks below are ours)', async () => {
    await removeAllRules(nft);
    await expectTable(agentA, [
      ['private', tcp('10.99.0.2'), 'connected'],
      ['metadata', tcp('169.254.169.254'), 'connected'],
      ['cgnat', tcp('100.64.0.2'), 'connected'],
      ['internet', tcp('198.51.100.2'), 'connected'],
      ['other container', tcp(IP_B), 'connected'],
      ['gateway service', tcp(GW), 'connected'],
      ['gateway dns', udp(GW), 'reply'],
      ['ipv6 gateway', tcp('fd00:99::1'), 'connected'],
    ]);
  });

  test('restricted: private, metadata, CGNAT, other containers and the host refused at once; internet and gateway DNS reached', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a'), sandbox(B, 'vcoi-b', { mode: 'open', gatewayV4: '' })], blockAll: [] });
    await expectTable(agentA, [
      ['private', tcp('10.99.0.2'), 'refused'],
      ['metadata', tcp('169.254.169.254'), 'refused'],
      ['cgnat', tcp('100.64.0.2'), 'refused'],
      ['other container (bridged)', tcp(IP_B), 'refused'],
      ['host service on the gateway', tcp(GW), 'refused'],
      ['internet .2', tcp('198.51.100.2'), 'connected'],
      ['internet .3', tcp('198.51.100.3'), 'connected'],
      ['dns udp to gateway', udp(GW), 'reply'],
      ['dns tcp to gateway', tcp(GW, 53), 'connected'],
      ['dns to a private resolver', udp('10.99.0.2'), 'unreachable'],
      ['udp to metadata', udp('169.254.169.254'), 'unreachable'],
      ['dns to an internet resolver (the internet is open)', udp('198.51.100.2'), 'reply'],
      ['ipv6 (dropped: no answer)', tcp('fd00:99::1'), 'timeout'],
    ]);
    // "Refused" means at once, not after a timeout.
    const t = await agentA.probeTimed(tcp('10.99.0.2'));
    assert.equal(t.result, 'refused');
    assert.ok(t.ms < 500, `refused within ${t.ms} ms`);
    // B is open: the same destinations are reached from it.
    await expectTable(agentB, [
      ['private', tcp('10.99.0.2'), 'connected'],
      ['metadata', tcp('169.254.169.254'), 'connected'],
    ]);
  });

  test('restricted: every refusal is a kernel log line the monitor parses into sandbox, rule and destination', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    const [r] = await agentA.probe([tcp('10.99.0.2', 80)]);
    assert.equal(r, 'refused');
    const ev = await kmsg!.waitFor((e) => e.container === A && e.rule === 'private' && e.dst === '10.99.0.2');
    assert.deepEqual(
      { container: ev.container, rule: ev.rule, action: ev.action, src: ev.src, dst: ev.dst, proto: ev.proto, dport: ev.dport, physIn: ev.physIn },
      { container: A, rule: 'private', action: 'reject', src: IP_A, dst: '10.99.0.2', proto: 'tcp', dport: 80, physIn: 'vcoi-a' },
    );
    await agentA.probe([udp('169.254.169.254', 53)]);
    const meta = await kmsg!.waitFor((e) => e.container === A && e.rule === 'linklocal' && e.proto === 'udp');
    assert.deepEqual([meta.dst, meta.proto, meta.dport], ['169.254.169.254', 'udp', 53]);
    await agentA.probe([tcp('fd00:99::1', 80, { timeoutMs: 300 })]);
    const v6 = await kmsg!.waitFor((e) => e.container === A && e.rule === 'ipv6');
    assert.deepEqual([v6.action, v6.family, v6.inIface], ['drop', 6, 'vcoi-a']);
  });

  test('restricted: an address root adds inside the container does not bypass the rules', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    ip('-n', NS.a, 'addr', 'add', '10.250.0.99/24', 'dev', 'eth0');
    ip('-n', NS.a, 'addr', 'add', '192.0.2.77/32', 'dev', 'eth0');
    try {
      await expectTable(agentA, [
        ['private from a new address', tcp('10.99.0.2', 80, { from: '10.250.0.99' }), 'refused'],
        ['metadata from a new address', tcp('169.254.169.254', 80, { from: '10.250.0.99' }), 'refused'],
        ['private from a foreign subnet', tcp('10.99.0.2', 80, { from: '192.0.2.77' }), 'refused'],
      ]);
    } finally {
      ip('-n', NS.a, 'addr', 'del', '10.250.0.99/24', 'dev', 'eth0');
      ip('-n', NS.a, 'addr', 'del', '192.0.2.77/32', 'dev', 'eth0');
    }
  });

  test('restricted with allowLocalNetwork: the LAN, other containers and the host are reached; metadata and CGNAT are not', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a', { allowLocalNetwork: true })], blockAll: [] });
    await expectTable(agentA, [
      ['private', tcp('10.99.0.2'), 'connected'],
      ['other container', tcp(IP_B), 'connected'],
      ['host service', tcp(GW), 'connected'],
      ['metadata', tcp('169.254.169.254'), 'refused'],
      ['cgnat', tcp('100.64.0.2'), 'refused'],
      ['internet', tcp('198.51.100.2'), 'connected'],
    ]);
  });

  test('allowlist: only the CIDR and the resolved address are reached; DNS is refused everywhere, even to allowed addresses', async () => {
    await apply({
      sandboxes: [sandbox(A, 'vcoi-a', { mode: 'allowlist', allowCidrs: ['198.51.100.3/32'], resolvedIps: [{ ip: '198.51.100.2', expiresAt: Date.now() + 3_600_000 }] })],
      blockAll: [],
    });
    await expectTable(agentA, [
      ['resolved domain address', tcp('198.51.100.2'), 'connected'],
      ['allowed CIDR', tcp('198.51.100.3'), 'connected'],
      ['private', tcp('10.99.0.2'), 'refused'],
      ['metadata', tcp('169.254.169.254'), 'refused'],
      ['cgnat', tcp('100.64.0.2'), 'refused'],
      ['other container', tcp(IP_B), 'refused'],
      ['host service', tcp(GW), 'refused'],
      ['dns udp to gateway', udp(GW), 'unreachable'],
      ['dns tcp to gateway', tcp(GW, 53), 'refused'],
      ['dns udp to an allowed address', udp('198.51.100.2'), 'unreachable'],
      ['dns tcp to an allowed address', tcp('198.51.100.2', 53), 'refused'],
      ['ipv6', tcp('fd00:99::1', 80, { timeoutMs: 800 }), 'timeout'],
    ]);
    const dns = await kmsg!.waitFor((e) => e.container === A && e.rule === 'dns' && e.dst === GW);
    assert.equal(dns.dport, 53);
    await kmsg!.waitFor((e) => e.container === A && e.rule === 'notallowed' && e.dst === '10.99.0.2');
  });

  test('allowlist: a refresh that drops an address keeps the open connection and refuses new ones; new addresses are reached', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'allowlist', resolvedIps: [{ ip: '198.51.100.2', expiresAt: Date.now() + 3_600_000 }] })], blockAll: [] });
    const open = await agentA.call({ op: 'open', id: 'live', host: '198.51.100.2', port: 80, timeoutMs: PROBE_MS }, 5_000);
    assert.equal(open.greeting, 'hi\n');
    try {
      // The domain now resolves to .3 only.
      await apply({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'allowlist', resolvedIps: [{ ip: '198.51.100.3', expiresAt: Date.now() + 3_600_000 }] })], blockAll: [] });
      const echo = await agentA.call({ op: 'echo', id: 'live', text: 'still there', timeoutMs: PROBE_MS }, 5_000);
      assert.equal(echo.reply, 'still there', 'the live connection survived the refresh');
      await expectTable(agentA, [
        ['old address, new connection', tcp('198.51.100.2'), 'refused'],
        ['new address', tcp('198.51.100.3'), 'connected'],
      ]);
    } finally {
      await agentA.call({ op: 'close', id: 'live' }, 5_000);
    }
  });

  test('allowlist: a resolved address stops being allowed when its element times out', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'allowlist', resolvedIps: [{ ip: '198.51.100.2', expiresAt: Date.now() + 2_000 }] })], blockAll: [] });
    assert.deepEqual(await agentA.probe([tcp('198.51.100.2')]), ['connected']);
    await new Promise((r) => setTimeout(r, 2_600));
    assert.deepEqual(await agentA.probe([tcp('198.51.100.2')]), ['refused']);
  });

  test('allowlist with allowedPorts: other ports of an allowed address are refused', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'allowlist', allowCidrs: ['198.51.100.2'], allowedPorts: [80] })], blockAll: [] });
    await expectTable(agentA, [
      ['allowed port', tcp('198.51.100.2', 80), 'connected'],
      ['other port', tcp('198.51.100.2', 8080), 'refused'],
    ]);
  });

  test('open: everything is reached, and the sandbox\'s traffic is counted', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'open', gatewayV4: '' })], blockAll: [] });
    await expectTable(agentA, [
      ['private', tcp('10.99.0.2'), 'connected'],
      ['metadata', tcp('169.254.169.254'), 'connected'],
      ['cgnat', tcp('100.64.0.2'), 'connected'],
      ['other container', tcp(IP_B), 'connected'],
      ['internet', tcp('198.51.100.2'), 'connected'],
      ['ipv6', tcp('fd00:99::1'), 'connected'],
    ]);
    const installed = await listInstalledRules(nft);
    const a = installed.sandboxes.find((s) => s.key === A);
    assert.equal(a?.mode, 'open');
    assert.ok((a?.packets ?? 0) >= 6, `counted ${a?.packets} packets`);
  });

  test('boot block: nothing leaves before the rules are in place; a connect racing it succeeds once they are', async () => {
    await apply({ sandboxes: [], blockAll: [{ container: A, hostIface: 'vcoi-a' }] });
    assert.deepEqual(await agentA.probe([tcp('198.51.100.2', 80, { timeoutMs: 800 }), udp(GW, 53, { timeoutMs: 800 })]), ['timeout', 'timeout']);
    await kmsg!.waitFor((e) => e.container === A && e.rule === 'boot');
    // Dropped, not refused: the SYN is retried after ~1 s and gets through once the real rules replace the block.
    const racing = agentA.probeTimed(tcp('198.51.100.2', 80, { timeoutMs: 5_000 }));
    await new Promise((r) => setTimeout(r, 300));
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    const r = await racing;
    assert.equal(r.result, 'connected');
    assert.ok(r.ms >= 800, `connected on a retry (${r.ms} ms)`);
  });

  test('rules re-bind to a veth of the same name after a container restart, without a re-apply', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    restoreVethA();
    await expectTable(agentA, [
      ['private', tcp('10.99.0.2'), 'refused'],
      ['internet', tcp('198.51.100.2'), 'connected'],
    ]);
  });

  test('reconciling: rules of a sandbox that went away disappear with the next apply; the empty state leaves no table', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a'), sandbox(B, 'vcoi-b', { mode: 'allowlist' })], blockAll: [{ container: 'gone', hostIface: 'vcoi-g' }] });
    let installed = await listInstalledRules(nft);
    assert.deepEqual(installed.sandboxes.map((s) => s.key).sort(), [A, B, 'gone'].sort());
    assert.deepEqual(findOrphans(installed, [A]).map((s) => s.key).sort(), [B, 'gone'].sort());
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    installed = await listInstalledRules(nft);
    assert.deepEqual(installed.sandboxes.map((s) => s.key), [A]);
    assert.deepEqual(installed.unknown, []);
    const text = inNs(NS.router, 'nft', 'list', 'ruleset');
    assert.ok(!text.includes(B) && !text.includes('gone'), 'no chain, set, limit or rule of B or of the boot block is left');
    // B lost its rules with the apply, so it is unfiltered again.
    assert.deepEqual(await agentB.probe([tcp('10.99.0.2')]), ['connected']);
    await apply({ sandboxes: [], blockAll: [] });
    assert.deepEqual((await listInstalledRules(nft)).tables, []);
    await removeAllRules(nft);
    await removeAllRules(nft);
    assert.deepEqual(await agentA.probe([tcp('10.99.0.2')]), ['connected']);
  });

  test('a failing transaction changes nothing: the rules in place stay in force', async () => {
    await apply({ sandboxes: [sandbox(A, 'vcoi-a')], blockAll: [] });
    const before = await listInstalledRules(nft);
    const broken = `${renderRuleset({ sandboxes: [sandbox(A, 'vcoi-a', { mode: 'open', gatewayV4: '' })], blockAll: [] }, { now: Date.now() })}\nadd rule inet coi_guard nochain accept\n`;
    await assert.rejects(applyRuleset(broken, nft), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.COMMAND_FAILED && /Error/.test(e.message));
    const afterwards = await listInstalledRules(nft);
    assert.deepEqual(afterwards.sandboxes.map((s) => [s.key, s.mode]), before.sandboxes.map((s) => [s.key, s.mode]));
    assert.deepEqual(await agentA.probe([tcp('10.99.0.2')]), ['refused']);
    await removeAllRules(nft);
  });
});
