/**
 * `[network] backend = "firewalld"`: a sandbox's restricted mode expressed as
 * a firewalld zone and policy (firewalld-policy.ts), installed by the guard's
 * runners (firewalld-runner.ts) into a real firewalld, against a real
 * container on the dead-end network, whose NIC has Incus's anti-spoofing on.
 *
 * The container is not labelled as a COI sandbox, so no guard (the host's or
 * anyone's) puts nft rules on it: what it can reach is decided by firewalld
 * alone. Its baseline (before the policy) reaches the private test host, so a
 * refusal afterwards is the policy's.
 *
 * The second test is the same end to end: a guard of its own (scope, socket,
 * container prefix) fences `coi shell --background` launches of a project with
 * `[network] backend = "firewalld"`, with and without a running firewalld.
 *
 * firewalld runs with a configuration in this test's own directory (default
 * zone trusted, so the machine's own inbound traffic is never rejected) and is
 * stopped at the end, with the D-Bus daemon when the test started it. From the
 * container, curl with a 3 s bound probes listeners this test runs in
 * coi-deadend on a port chosen per run; nothing leaves the machine.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { GuardClient } from '../../helper/guard/client';
import { firewalldNames, sandboxObjects, sandboxPolicyXml, sandboxZoneXml } from '../../helper/guard/network/firewalld-policy';
import { tablesFor } from '../../helper/guard/network/names';
import { HELPER, sleep as wait } from './support';
import { assertFirewalldUsable, firewallCmdExec, installSandboxPolicy, listSandboxPolicies, removeSandboxPolicy } from '../../helper/guard/network/firewalld-runner';
import type { SandboxNetwork } from '../../helper/guard/network/types';

const BRIDGE = 'coibr0';
const NETNS = 'coi-deadend';
const HOSTS = { private: '10.99.0.2', metadata: '169.254.169.254', cgnat: '100.64.0.2', internet: '198.51.100.2', internet2: '198.51.100.3' } as const;
const PORT = randomInt(20_000, 40_000);
const SCOPE = `fwbe${randomBytes(3).toString('hex')}`;
const NAME = `fwbe-${randomBytes(3).toString('hex')}`;
const VETH = `fwbe${randomBytes(4).toString('hex')}`;
const root = mkdtempSync(path.join(os.tmpdir(), 'coi-fwbe-'));
const fwcmd = firewallCmdExec();

function sh(cmd: string, args: string[], timeoutMs = 30_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fw = (...args: string[]) => sh('firewall-cmd', args).stdout.trim();

type Outcome = 'reached' | 'refused' | 'no answer';
/** One HTTP GET from inside the container; `from` binds a source address first. */
function probe(ip: string, from?: string): Outcome {
  return probeIn(NAME, ip, from);
}
function table(name = NAME): Record<string, Outcome> {
  return Object.fromEntries(Object.entries(HOSTS).map(([k, ip]) => [k, probeIn(name, ip)]));
}
function probeIn(name: string, ip: string, from?: string): Outcome {
  const r = sh('incus', ['exec', name, '--', 'curl', '-s', '-o', '/dev/null', '-m', '3', ...(from ? ['--interface', from] : []), `http://${ip}:${PORT}/`]);
  return r.status === 0 ? 'reached' : r.status === 7 ? 'refused' : 'no answer';
}
const RESTRICTED = { private: 'refused', metadata: 'refused', cgnat: 'refused', internet: 'reached', internet2: 'reached' };

let listeners: ChildProcess | undefined;
let firewalld: ChildProcess | undefined;
let dbusPid: number | undefined;

before(async () => {
  assert.equal(sh('sh', ['-c', 'command -v firewalld && command -v firewall-cmd']).status, 0, 'firewalld is not installed: bash .ci/install-firewalld.sh');
  const others = sh('pgrep', ['-x', 'firewalld']).stdout.trim();
  assert.equal(others, '', `another firewalld is running (pid ${others}); this test starts and stops its own`);
  // Listeners on every test address in the dead-end namespace.
  const py = `import http.server, threading, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hi")
    def log_message(self, *a): pass
for ip in sys.argv[2:]:
    s = http.server.ThreadingHTTPServer((ip, int(sys.argv[1])), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()`;
  listeners = spawn('ip', ['netns', 'exec', NETNS, 'python3', '-c', py, String(PORT), ...Object.values(HOSTS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the listeners did not start within 10 s')), 10_000);
    listeners!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && (clearTimeout(t), resolve()));
  });
  // The sandbox: one NIC with a fixed host-side name and Incus's anti-spoofing, as the firewalld backend requires.
  let r = sh('incus', ['init', 'coi-base', NAME, '-n', BRIDGE], 120_000);
  assert.equal(r.status, 0, r.stderr);
  r = sh('incus', ['config', 'device', 'set', NAME, 'eth0', `host_name=${VETH}`, 'security.mac_filtering=true', 'security.ipv4_filtering=true', 'security.ipv6_filtering=true']);
  assert.equal(r.status, 0, r.stderr);
  r = sh('incus', ['start', NAME], 120_000);
  assert.equal(r.status, 0, r.stderr);
  for (let i = 0; i < 60 && !/\d+\.\d+\.\d+\.\d+/.test(sh('incus', ['list', NAME, '-c', '4', '-f', 'csv']).stdout); i++) await sleep(500);
});

after(async () => {
  sh('incus', ['delete', '-f', NAME], 120_000);
  for (const n of sh('incus', ['list', '-c', 'n', '-f', 'csv']).stdout.split('\n').filter((x) => x.startsWith(PREFIX))) sh('incus', ['delete', '-f', n], 120_000);
  await stopGuard();
  listeners?.kill('SIGTERM');
  await stopFirewalld();
  rmSync(root, { recursive: true, force: true });
});

async function startFirewalld(): Promise<void> {
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
  writeFileSync(path.join(conf, 'firewalld.conf'), 'DefaultZone=trusted\nCleanupOnExit=yes\nFirewallBackend=nftables\nFlushAllOnReload=yes\nLogDenied=off\n');
  const fd = openSync(path.join(root, 'firewalld.log'), 'a');
  firewalld = spawn('firewalld', ['--nofork', '--nopid', '--system-config', conf, '--log-target', 'console'], { stdio: ['ignore', fd, fd] });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && fw('--state') !== 'running') {
    assert.equal(firewalld.exitCode, null, `firewalld exited: ${readFileSync(path.join(root, 'firewalld.log'), 'utf8')}`);
    await sleep(200);
  }
  assert.equal(fw('--state'), 'running');
}

/** The sandbox bridge's zone in firewalld's saved configuration, read with firewalld stopped. */
const savedBridgeZone = (): string => {
  const z = spawnSync('firewall-offline-cmd', ['--get-zone-of-interface=coibr0'], { encoding: 'utf8' }).stdout.trim();
  return z === 'no zone' ? '' : z;
};
// A guard that sees this test's firewalld binds the bridge in the saved configuration; it is put back as found.
const bridgeZoneBefore = savedBridgeZone();

async function stopFirewalld(): Promise<void> {
  if (firewalld && firewalld.exitCode === null) {
    firewalld.kill('SIGTERM');
    const t = setTimeout(() => firewalld?.kill('SIGKILL'), 15_000);
    await new Promise((r) => firewalld!.once('exit', r));
    clearTimeout(t);
  }
  const now = savedBridgeZone();
  if (now && now !== bridgeZoneBefore) spawnSync('firewall-offline-cmd', [`--zone=${now}`, '--remove-interface=coibr0']);
  if (dbusPid) {
    try {
      process.kill(dbusPid, 'SIGTERM');
    } catch {
      // already gone
    }
    for (let i = 0; i < 50 && sh('kill', ['-0', String(dbusPid)]).status === 0; i++) await sleep(100);
    rmSync('/run/dbus/pid', { force: true });
    rmSync('/run/dbus/system_bus_socket', { force: true });
    dbusPid = undefined;
  }
}

test('backend firewalld: a clear error without firewalld; restricted mode as a zone + policy holds, after --reload too, against ip addr add; gone after removal', async () => {
  const names = firewalldNames(NAME, SCOPE);
  // No firewalld: the runner refuses, saying so, instead of leaving the sandbox open.
  await assert.rejects(installSandboxPolicy(fwcmd, { names, zoneXml: '', policyXml: '' }), /firewalld is not running/);

  await startFirewalld();
  await assertFirewalldUsable(fwcmd);
  // Baseline: nothing fences this container yet, so the private host answers; a refusal later is the policy's.
  assert.equal(probe(HOSTS.private), 'reached', 'without the policy the private test host is reachable');

  const mac = sh('incus', ['config', 'get', NAME, 'volatile.eth0.hwaddr']).stdout.trim();
  const gateway = sh('incus', ['network', 'get', BRIDGE, 'ipv4.address']).stdout.trim().split('/')[0]!;
  const sb: SandboxNetwork = { container: NAME, hostIface: VETH, mode: 'restricted', gatewayV4: gateway, allowLocalNetwork: false, allowCidrs: [], resolvedIps: [] };
  const t0 = Date.now();
  await installSandboxPolicy(fwcmd, { names, zoneXml: sandboxZoneXml(sb, mac, SCOPE), policyXml: sandboxPolicyXml(sb, SCOPE) });
  console.log(`# install took ${Date.now() - t0} ms`);
  assert.ok(fw('--get-active-policies').includes(names.policy), 'the policy is live');
  assert.ok(fw('--permanent', '--get-policies').split(/\s+/).includes(names.policy), 'and permanent');
  assert.deepEqual(table(), RESTRICTED);
  // DNS to the gateway passes the zone (an answer, even "not found", is not a timeout).
  const dns = sh('incus', ['exec', NAME, '--', 'sh', '-c', `timeout 5 getent hosts coi-test-name.invalid; echo rc=$?`]).stdout;
  assert.match(dns, /rc=2/, `DNS to the gateway answers: ${dns}`);

  sh('firewall-cmd', ['--reload']);
  assert.deepEqual(table(), RESTRICTED, 'after firewall-cmd --reload');

  // Root inside takes another address: Incus drops the forged source, and the real one is still matched by MAC.
  const add = sh('incus', ['exec', NAME, '--', 'ip', 'addr', 'add', '10.213.0.77/24', 'dev', 'eth0']);
  assert.equal(add.status, 0, add.stderr);
  assert.notEqual(probe(HOSTS.private, '10.213.0.77'), 'reached', 'a forged source address does not reach the private host');
  assert.equal(probe(HOSTS.private), 'refused', 'nor does the real one');

  // What `coi clean --orphans` sees: this scope's objects by container; another scope sees none of them.
  assert.deepEqual([...(await listSandboxPolicies(fwcmd, SCOPE)).entries()], [[NAME, { names, zone: true, policy: true }]]);
  assert.equal((await listSandboxPolicies(fwcmd, `${SCOPE}x`)).size, 0);

  await removeSandboxPolicy(fwcmd, names);
  await removeSandboxPolicy(fwcmd, names); // twice: nothing left to remove is not an error
  assert.ok(!fw('--permanent', '--get-policies').includes(names.policy), 'policy gone from the permanent configuration');
  assert.ok(!fw('--permanent', '--get-zones').includes(names.zone), 'zone gone');
  assert.ok(!sh('nft', ['list', 'table', 'inet', 'firewalld']).stdout.includes(names.zone), 'and from firewalld\'s live rules');
  assert.equal(probe(HOSTS.private), 'reached', 'and the container is no longer fenced by it');
});

// ── the guard with backend = "firewalld", end to end ────────────────────────

/** Sandboxes of the end-to-end test: their own prefix and a guard scope of their own, fenced by this test's guard only. */
const GSCOPE = `fwg${randomBytes(3).toString('hex')}`;
const PREFIX = `coi-fwg${randomBytes(2).toString('hex')}-`;
const guardSocket = path.join(root, 'guard.sock');
const guardLog = path.join(root, 'guard.log');
let guard: ChildProcess | undefined;

async function startGuard(): Promise<void> {
  const fd = openSync(guardLog, 'a');
  guard = spawn(process.execPath, [HELPER, 'guard', 'run'], {
    env: { ...process.env, COI_GUARD_SOCKET: guardSocket, COI_GUARD_SCOPE: GSCOPE, COI_NET_STATE_DIR: path.join(root, 'state'), COI_NET_CACHE_DIR: path.join(root, 'cache'), COI_GUARD_MONITOR: '0', COI_LOG_LEVEL: 'debug' },
    stdio: ['ignore', fd, fd],
  });
  const probeClient = new GuardClient({ socketPath: guardSocket, reconnect: true });
  probeClient.connect({ timeoutMs: 500 }).catch(() => undefined);
  try {
    await probeClient.waitConnected(20_000);
  } finally {
    probeClient.close();
  }
}

async function stopGuard(): Promise<void> {
  if (!guard || guard.exitCode !== null) return;
  guard.kill('SIGTERM');
  const t = setTimeout(() => guard?.kill('SIGKILL'), 10_000);
  await new Promise((r) => guard!.once('exit', r));
  clearTimeout(t);
  // Its nft tables stay in place by design; this scope's are the test's to remove.
  const t2 = tablesFor(GSCOPE);
  sh('nft', ['delete', 'table', 'inet', t2.filter]);
  sh('nft', ['delete', 'table', 'netdev', t2.ingress]);
}

function coiRun(args: string[], home: string, cwd: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [HELPER, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 240_000,
    env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX, COI_GUARD_SOCKET: guardSocket, COI_GUARD_SCOPE: GSCOPE },
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function ourInstances(): string[] {
  return sh('incus', ['list', '-c', 'n', '-f', 'csv']).stdout.split('\n').filter((x) => x.startsWith(PREFIX));
}

const permanent = () => new Set([...fw('--permanent', '--get-zones').split(/\s+/), ...fw('--permanent', '--get-policies').split(/\s+/)]);

/** Bounded wait for the guard's reaction to an Incus event (a firewall-cmd --reload takes seconds). */
async function waitGone(objects: string[], what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let left = objects.filter((o) => permanent().has(o));
  while (left.length > 0 && Date.now() < deadline) {
    await wait(500);
    const now = permanent();
    left = objects.filter((o) => now.has(o));
  }
  assert.deepEqual(left, [], `${what}: the sandbox's zone and policy are gone from firewalld's permanent configuration`);
}

test('guard, backend = "firewalld": refused without firewalld; a launch gets a zone + policy that hold (against ip addr add, after --reload, blocked while firewalld is down), open mode too; removed on coi kill, on incus delete behind our back and by coi clean --orphans', async () => {
  // The first test leaves firewalld running: this one starts without it, on a saved configuration as found.
  await stopFirewalld();
  await startGuard();
  const home = path.join(root, 'home');
  const ws = path.join(root, 'ws');
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(path.join(ws, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n');
  writeFileSync(path.join(ws, '.coi', 'config.toml'), '[network]\nbackend = "firewalld"\n');

  // No firewalld: the launch is refused, saying why and what to do, and nothing is left behind (let alone running).
  const refused = coiRun(['shell', '--background'], home, ws);
  assert.notEqual(refused.code, 0, `the launch without firewalld succeeded: ${refused.stdout}`);
  assert.match(refused.stderr, /firewalld is not running/);
  assert.match(refused.stderr, /Start firewalld/);
  assert.deepEqual(ourInstances(), [], 'no sandbox is left after the refused launch');

  await startFirewalld();
  const launched = coiRun(['shell', '--background'], home, ws);
  assert.equal(launched.code, 0, `coi shell failed: ${launched.stderr}`);
  const name = launched.stdout.trim();
  assert.ok(name.startsWith(PREFIX), `launched ${name}`);
  const names = firewalldNames(name, GSCOPE);
  assert.match(sh('incus', ['config', 'device', 'get', name, 'eth0', 'security.mac_filtering']).stdout, /true/, 'the NIC is locked to its MAC');
  assert.ok(permanent().has(names.zone) && permanent().has(names.policy), 'its zone and policy are in the permanent configuration');
  assert.ok(fw('--get-active-policies').includes(names.policy), 'and live');
  // The guard's own tables only count it: firewalld decides.
  const t = tablesFor(GSCOPE);
  assert.match(sh('nft', ['list', 'table', 'netdev', t.ingress]).stdout, new RegExp(`coi:sandbox key=${name} iface=\\S+ mode=restricted backend=firewalld`));
  assert.doesNotMatch(sh('nft', ['list', 'table', 'inet', t.filter]).stdout, new RegExp(`chain sb_${name}`));

  for (let i = 0; i < 60 && !/\d+\.\d+\.\d+\.\d+/.test(sh('incus', ['list', name, '-c', '4', '-f', 'csv']).stdout); i++) await wait(500);
  assert.deepEqual(table(name), RESTRICTED, 'restricted by firewalld');
  const dns = sh('incus', ['exec', name, '--', 'sh', '-c', 'timeout 5 getent hosts coi-test-name.invalid; echo rc=$?']).stdout;
  assert.match(dns, /rc=2/, `DNS to the gateway answers: ${dns}`);
  const add = sh('incus', ['exec', name, '--', 'ip', 'addr', 'add', '10.213.0.78/24', 'dev', 'eth0']);
  assert.equal(add.status, 0, add.stderr);
  assert.notEqual(probeIn(name, HOSTS.private, '10.213.0.78'), 'reached', 'a forged source address does not reach the private host');
  sh('firewall-cmd', ['--reload']);
  assert.deepEqual(table(name), RESTRICTED, 'after firewall-cmd --reload');

  // firewalld stops and takes its rules with it: the guard blocks the sandbox again, and lifts the block once
  // firewalld runs again with the sandbox's objects (from its permanent configuration).
  const bootChain = () => sh('nft', ['list', 'table', 'netdev', t.ingress]).stdout.includes(`chain boot_${name} `);
  await stopFirewalld();
  for (const deadline = Date.now() + 30_000; !bootChain() && Date.now() < deadline; ) await wait(250);
  assert.ok(bootChain(), 'the guard put the boot block back when firewalld stopped');
  assert.equal(probeIn(name, HOSTS.internet), 'no answer', 'nothing leaves the sandbox while firewalld is down');
  await startFirewalld();
  for (const deadline = Date.now() + 60_000; bootChain() && Date.now() < deadline; ) await wait(250);
  assert.ok(!bootChain(), 'the guard lifted the boot block once firewalld ran again');
  assert.deepEqual(table(name), RESTRICTED, 'firewalld restarted: restricted again');

  // coi kill: gone.
  const killed = coiRun(['kill', name], home, ws);
  assert.equal(killed.code, 0, killed.stderr);
  await waitGone([names.zone, names.policy], 'after coi kill');

  // open under firewalld: everything reached; then incus delete behind our back: gone too.
  // From the user's own config: an untrusted project may not open the network.
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[network]\nmode = "open"\n');
  const second = coiRun(['shell', '--background'], home, ws);
  assert.equal(second.code, 0, `coi shell failed: ${second.stderr}`);
  const name2 = second.stdout.trim();
  const names2 = firewalldNames(name2, GSCOPE);
  assert.ok(permanent().has(names2.policy), 'the second sandbox has its policy');
  for (let i = 0; i < 60 && !/\d+\.\d+\.\d+\.\d+/.test(sh('incus', ['list', name2, '-c', '4', '-f', 'csv']).stdout); i++) await wait(500);
  assert.deepEqual(table(name2), { private: 'reached', metadata: 'reached', cgnat: 'reached', internet: 'reached', internet2: 'reached' }, 'open: everything reached');
  assert.match(sh('nft', ['list', 'table', 'netdev', t.ingress]).stdout, new RegExp(`coi:sandbox key=${name2} iface=\\S+ mode=open backend=firewalld`), 'and still counted');
  assert.equal(sh('incus', ['delete', '--force', name2], 120_000).status, 0);
  await waitGone([names2.zone, names2.policy], 'after incus delete --force');

  // What a crash leaves (objects of this scope for a sandbox that does not exist): coi clean --orphans removes them.
  const ghost = `${PREFIX}ghost-1`;
  const gateway = sh('incus', ['network', 'get', BRIDGE, 'ipv4.address']).stdout.trim().split('/')[0]!;
  const objs = sandboxObjects({ container: ghost, hostIface: 'coighost', mode: 'restricted', gatewayV4: gateway, allowLocalNetwork: false, allowCidrs: [], resolvedIps: [] }, '10:66:6a:00:00:99', GSCOPE);
  await installSandboxPolicy(fwcmd, objs);
  assert.ok(permanent().has(objs.names.policy));
  const clean = coiRun(['clean', '--orphans'], home, ws);
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(clean.stdout, new RegExp(`removed the network rules of ${ghost} \\(2 object\\(s\\)\\)`));
  assert.ok(!permanent().has(objs.names.policy) && !permanent().has(objs.names.zone), 'coi clean --orphans removed them');
  assert.deepEqual(ourInstances(), []);
});
