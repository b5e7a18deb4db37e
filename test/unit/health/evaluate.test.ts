import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { CHECKS, evaluate, parseVersion, poolVerdict, versionAtLeast } from '../../../helper/health/evaluate';
import { applyFixes } from '../../../helper/health/fix';
import { silentLog } from '../../../helper/log';
import type { IncusClient } from '../../../helper/incus/client';
import type { HealthFacts, ProbeOutcome } from '../../../helper/health/facts';
import { exitCodeOf, healthReport } from '../../../helper/health/schema';
import { chooseTarget, parseProbeOutput, parseTarget } from '../../../helper/health/target';

const GiB = 1024 ** 3;
const probe = (over: Partial<ProbeOutcome> = {}): ProbeOutcome => ({ target: '10.99.0.2', port: 80, icmp: 'no-reply', tcp: 'refused', address: '10.213.0.150/24', route: 'default via 10.213.0.2 dev eth0', raw: '', ...over });

/** A healthy host, as facts; each test breaks one thing. */
function healthy(): HealthFacts {
  return {
    now: new Date('2026-11-27T12:00:00Z'),
    helperVersion: '0.1.0',
    kernelRelease: '6.8.0-45-generic',
    user: { uid: 1000, name: 'ann', root: false },
    config: { ok: true, image: 'coi-base', pool: 'coi', networkMode: 'restricted', source: '/home/ann/.coi/config.toml' },
    incus: { reachable: true, serverVersion: '6.0.4', apiVersion: '1.0', firewall: 'nftables', endpoint: 'unix:/var/lib/incus/unix.socket' },
    socket: { path: '/var/lib/incus/unix.socket', exists: true, mode: 0o660, gid: 994 },
    access: { group: 'incus-admin', groupExists: true, inGroupFile: true, inSession: true },
    guard: { reachable: true, socket: '/run/coi/guard.sock', version: '0.1.0', pid: 42, capabilities: ['network'], eventsConnected: true },
    pools: [{ name: 'coi', driver: 'btrfs', status: 'Created', total: 30 * GiB, used: 2 * GiB }],
    bridge: { name: 'coibr0', exists: true, managed: true, mode: 'nat', nat: true, address: '10.213.0.1/24', state: 'up' },
    sysctl: { ipForward: '1', bridgeNfCallIptables: '1' },
    nft: { path: '/usr/sbin/nft', version: 'nftables v1.0.6' },
    firewalld: { running: false },
    lsm: { apparmor: true, seccomp: true },
    profiles: [{ name: 'default', config: {} }],
    instances: [],
    image: { alias: 'coi-base', fingerprint: '32dd8a4b5ed328dbbca7', createdAt: '2026-11-20T00:00:00Z', uploadedAt: '2026-11-20T00:00:00Z' },
    idmap: { needed: false, uid: 1000, gid: 1000, uidDelegated: false, gidDelegated: false },
    orphans: { sandboxes: [], veths: [], locks: [] },
    live: { ran: true, started: true, name: 'coi-11111111-1', seconds: 2.1, seccomp: '2', uidMap: '0 1000000 1000000000', probe: probe() },
  };
}

function checkOf(f: HealthFacts, key: string) {
  const r = evaluate(f);
  assert.ok(healthReport().safeParse(r).success, JSON.stringify(healthReport().safeParse(r).error?.issues));
  return { report: r, check: r.checks[key]! };
}

describe('health evaluation', () => {
  test('a healthy host: every check ok, exit 0, and the report validates against the schema', () => {
    const r = evaluate(healthy());
    const bad = Object.entries(r.checks).filter(([, c]) => c.status !== 'ok').map(([k, c]) => `${k}: ${c.message}`);
    assert.deepEqual(bad, []);
    assert.equal(r.status, 'healthy');
    assert.equal(exitCodeOf(r), 0);
    assert.deepEqual(r.summary, { total: CHECKS.length, passed: CHECKS.length, warnings: 0, failed: 0 });
    healthReport().parse(r);
  });

  test('the schema refuses a summary or status that does not follow from the checks, and a bad check without a fix', () => {
    const r = evaluate(healthy());
    assert.equal(healthReport().safeParse({ ...r, status: 'degraded' }).success, false);
    assert.equal(healthReport().safeParse({ ...r, summary: { ...r.summary, passed: 1 } }).success, false);
    const broken = { ...r, status: 'degraded', summary: { ...r.summary, passed: r.summary.passed - 1, warnings: 1 }, checks: { ...r.checks, kernel_version: { ...r.checks.kernel_version!, status: 'warning' } } };
    assert.equal(healthReport().safeParse(broken).success, false, 'a warning without a remedy is refused');
  });

  test('kernel older than 5.15 is a warning', () => {
    const f = healthy();
    f.kernelRelease = '5.10.0-28-amd64';
    const { check, report } = checkOf(f, 'kernel_version');
    assert.equal(check.status, 'warning');
    assert.equal(exitCodeOf(report), 1);
    assert.deepEqual(parseVersion('6.18.44-fc-v782'), [6, 18, 44]);
    assert.ok(versionAtLeast([5, 15, 0], [5, 15]) && !versionAtLeast([5, 4, 9], [5, 15]) && versionAtLeast([6, 0, 0], [5, 15]));
  });

  test('Incus unreachable fails with set-up as the fix; a permission error offers the group', () => {
    const f = healthy();
    f.incus = { reachable: false, endpoint: 'unix:/x', error: 'ENOENT', code: 'INCUS_UNREACHABLE' };
    assert.equal(checkOf(f, 'incus').check.remedy?.shell, 'sudo coi setup');
    f.incus = { reachable: false, endpoint: 'unix:/x', error: 'EACCES', code: 'INCUS_PERMISSION' };
    f.access = { group: 'incus-admin', groupExists: true, inGroupFile: false, inSession: false };
    const { check } = checkOf(f, 'permissions');
    assert.equal(check.status, 'failed');
    assert.equal(check.remedy?.shell, 'sudo usermod -aG incus-admin ann');
    f.incus = { reachable: true, serverVersion: '5.21.1', apiVersion: '1.0', endpoint: 'unix:/x' };
    assert.match(checkOf(f, 'incus').check.message, /older than 6\.0/);
  });

  test('a group membership this login session does not have yet is a warning to log in again', () => {
    const f = healthy();
    f.access.inSession = false;
    const { check } = checkOf(f, 'permissions');
    assert.equal(check.status, 'warning');
    assert.match(check.remedy!.title, /Log out and in/);
  });

  test('no guard: failed and fixable; a guard without events or of another version: warning', () => {
    const f = healthy();
    f.guard = { reachable: false, socket: '/run/coi/guard.sock', error: 'ENOENT' };
    const { check } = checkOf(f, 'guard');
    assert.equal(check.status, 'failed');
    assert.equal(check.fixable, true);
    assert.equal(check.remedy?.shell, 'sudo coi guard start');
    const g = healthy();
    g.guard = { reachable: true, socket: 's', version: '0.0.9', pid: 1, capabilities: [], eventsConnected: true };
    assert.match(checkOf(g, 'guard').check.message, /version 0\.0\.9, this coi is 0\.1\.0/);
  });

  test('storage pools: thresholds, a missing pool, and dir is a warning that says why', () => {
    assert.equal(poolVerdict({ name: 'p', driver: 'btrfs', total: 100 * GiB, used: 81 * GiB }).status, 'warning');
    assert.equal(poolVerdict({ name: 'p', driver: 'btrfs', total: 100 * GiB, used: 91 * GiB }).status, 'failed');
    assert.equal(poolVerdict({ name: 'p', driver: 'btrfs', total: 6 * GiB, used: 2 * GiB }).status, 'warning', 'under 5 GiB free');
    assert.equal(poolVerdict({ name: 'p', driver: 'btrfs', total: 3 * GiB, used: 1.5 * GiB }).status, 'failed', 'under 2 GiB free');
    assert.equal(poolVerdict({ name: 'p', driver: 'zfs', total: 100 * GiB, used: 10 * GiB }).status, 'ok');
    const f = healthy();
    f.config = { ...f.config, pool: 'slow' } as HealthFacts['config'];
    f.pools.push({ name: 'slow', driver: 'dir', total: 200 * GiB, used: 20 * GiB });
    const { check, report } = checkOf(f, 'incus_storage_pools');
    assert.equal(check.status, 'warning');
    assert.match(check.message, /slow uses the dir driver/);
    assert.match(check.remedy!.title, /btrfs or ZFS/);
    assert.equal(exitCodeOf(report), 1);
    f.config = { ...f.config, pool: 'gone' } as HealthFacts['config'];
    assert.equal(checkOf(f, 'incus_storage_pools').check.status, 'failed');
  });

  test('a privileged profile or container fails, naming each', () => {
    const f = healthy();
    f.profiles = [{ name: 'default', config: { 'security.privileged': 'true' } }, { name: 'x', config: {} }];
    f.instances = [{ name: 'legacy', config: { 'security.privileged': 'true' }, status: 'Running' }];
    const { check, report } = checkOf(f, 'privileged_profile');
    assert.equal(check.status, 'failed');
    assert.match(check.message, /profile "default", container "legacy"/);
    assert.equal(check.remedy?.shell, 'incus profile unset default security.privileged');
    assert.equal(exitCodeOf(report), 2);
  });

  test('raw seccomp/AppArmor/LXC overrides are a warning naming where; a sandbox without a seccomp filter fails', () => {
    const f = healthy();
    f.profiles = [{ name: 'default', config: { 'raw.lxc': 'lxc.apparmor.profile=unconfined' } }];
    const c = checkOf(f, 'security_posture').check;
    assert.equal(c.status, 'warning');
    assert.match(c.message, /profile "default" \(raw\.lxc\)/);
    const g = healthy();
    g.live = { ...(g.live as Extract<HealthFacts['live'], { ran: true }>), seccomp: '0' };
    assert.equal(checkOf(g, 'security_posture').check.status, 'failed');
    const h = healthy();
    h.lsm.apparmor = false;
    const ok = checkOf(h, 'security_posture').check;
    assert.equal(ok.status, 'ok');
    assert.match(ok.message, /AppArmor is not available/);
  });

  test('the image: missing fails (pointing at set-up for coi-base), older than 30 days warns', () => {
    const f = healthy();
    f.image = { alias: 'coi' };
    const c = checkOf(f, 'image').check;
    assert.equal(c.status, 'failed');
    assert.match(c.remedy!.title, /coi-base/);
    const g = healthy();
    g.image.createdAt = '2026-09-01T00:00:00Z';
    g.image.uploadedAt = '2026-09-01T00:00:00Z';
    assert.match(checkOf(g, 'image_age').check.message, /87 days old/);
  });

  test('forwarding matters on a NAT bridge, not on the dead-end network; a missing bridge fails', () => {
    const f = healthy();
    f.sysctl.ipForward = '0';
    const c = checkOf(f, 'ip_forwarding').check;
    assert.equal(c.status, 'failed');
    assert.equal(c.fixable, true);
    f.bridge = { name: 'coibr0', exists: true, managed: true, mode: 'dead-end', nat: false, address: '10.213.0.1/24', state: 'up' };
    assert.equal(checkOf(f, 'ip_forwarding').check.status, 'ok');
    f.bridge = { name: 'coibr0', exists: false };
    assert.equal(checkOf(f, 'network_bridge').check.status, 'failed');
  });

  test('firewalld: fine when off or when its zone passes sandbox traffic; otherwise a warning saying what it would block, with the zone command', () => {
    const f = healthy();
    f.firewalld = { running: true, zoneOfBridge: 'public', explicit: true, blocks: ['DHCP from the sandboxes to the host (udp 67): new sandboxes get no address', 'DNS from the sandboxes to the host (53): names do not resolve inside'] };
    const c = checkOf(f, 'firewalld').check;
    assert.equal(c.status, 'warning');
    assert.match(c.message, /coibr0 is in the zone "public"; firewalld would block: DHCP .*; DNS /);
    assert.match(c.remedy!.shell!, /--zone=trusted --add-interface=coibr0/);
    f.firewalld = { running: true, zoneOfBridge: 'public', explicit: false, blocks: ['DHCP'] };
    assert.match(checkOf(f, 'firewalld').check.message, /in no zone of its own, so in the default zone "public" \(the guard moves it/);
    f.firewalld = { running: true, zoneOfBridge: 'trusted', explicit: true, blocks: [] };
    assert.equal(checkOf(f, 'firewalld').check.status, 'ok');
    f.firewalld = { running: true, error: 'no D-Bus' };
    assert.match(checkOf(f, 'firewalld').check.message, /unknown \(no D-Bus\)/);
  });

  test('firewalld: with backend = "firewalld" configured or on a sandbox, firewalld not running or bridge-nf-call off fails, with the fix', () => {
    const f = healthy();
    f.instances = [{ name: 'coi-1-1', status: 'Running', config: { 'user.coi.network': '{"v":1,"mode":"restricted","allowLocal":false,"cidrs":[],"domains":[],"ports":[],"refreshMin":30,"backend":"firewalld"}' } }];
    let c = checkOf(f, 'firewalld').check;
    assert.equal(c.status, 'failed');
    assert.match(c.message, /firewalld is not running, and sandbox coi-1-1 relies on it/);
    assert.equal(c.remedy?.shell, 'sudo systemctl start firewalld');
    f.instances = [];
    assert.equal(checkOf(f, 'firewalld').check.status, 'ok', 'nobody relies on it: its absence is fine');
    if (f.config.ok) f.config.networkBackend = 'firewalld';
    f.firewalld = { running: true, zoneOfBridge: 'trusted', explicit: true, blocks: [] };
    assert.equal(checkOf(f, 'firewalld').check.status, 'ok');
    f.sysctl.bridgeNfCallIptables = '0';
    c = checkOf(f, 'firewalld').check;
    assert.equal(c.status, 'failed');
    assert.match(c.message, /bridge-nf-call-iptables is 0, and the configuration \(network.backend = "firewalld"\) relies on firewalld/);
  });

  test('orphans are a fixable warning that names each; missing nft fails', () => {
    const f = healthy();
    f.orphans = { sandboxes: [{ name: 'coi-1-1', reason: 'launch was interrupted' }], veths: ['coi0123456789a'], locks: [] };
    const c = checkOf(f, 'orphaned_resources').check;
    assert.equal(c.status, 'warning');
    assert.equal(c.fixable, true);
    assert.match(c.message, /sandbox coi-1-1 \(launch was interrupted\), host interface coi0123456789a/);
    f.nft = {};
    assert.equal(checkOf(f, 'nft').check.status, 'failed');
  });

  test('ids: delegated or mapped by shift is ok; undelegated with a guard is ok (it delegates); without one it fails', () => {
    const f = healthy();
    f.idmap = { needed: true, uid: 1500, gid: 1500, uidDelegated: false, gidDelegated: false };
    assert.equal(checkOf(f, 'id_delegation').check.status, 'ok');
    f.guard = { reachable: false, socket: 's', error: 'x' };
    const c = checkOf(f, 'id_delegation').check;
    assert.equal(c.status, 'failed');
    assert.equal(c.fixable, true);
  });
});

describe('when a component cannot be reached', () => {
  test('a guard socket that refuses the user is not a stopped guard: the fix is the group, not a start', () => {
    const f = healthy();
    f.guard = { reachable: false, socket: '/run/coi/guard.sock', error: 'the COI guard is not running (EACCES on /run/coi/guard.sock)', denied: true };
    const c = checkOf(f, 'guard').check;
    assert.match(c.message, /refuses ann: only root and members of incus-admin/);
    assert.equal(c.fixable, undefined);
    assert.equal(c.remedy?.shell, 'sudo usermod -aG incus-admin ann');
  });

  test('without Incus, what depends on it is "not checked", not reported missing', () => {
    const f = healthy();
    f.incus = { reachable: false, endpoint: 'unix:/x', error: 'ENOENT', code: 'INCUS_UNREACHABLE' };
    f.bridge = { name: 'coibr0', exists: false, error: 'Incus cannot be reached' };
    f.image = { alias: 'coi-base', error: 'Incus cannot be reached' };
    for (const k of ['network_bridge', 'incus_storage_pools', 'image']) {
      const c = checkOf(f, k).check;
      assert.equal(c.status, 'warning', k);
      assert.match(c.message, /^not checked: Incus cannot be reached/, k);
    }
  });
});

describe('--fix', () => {
  const o = { env: {}, incus: {} as IncusClient, log: silentLog, dryRun: true };

  test('plans only what is safe, says why it cannot without root, and lists the rest with its remedy', async () => {
    const f = healthy();
    f.guard = { reachable: false, socket: 's', error: 'ENOENT' };
    f.idmap = { needed: true, uid: 1500, gid: 1500, uidDelegated: false, gidDelegated: true };
    f.orphans = { sandboxes: [{ name: 'coi-1-1', reason: 'launch was interrupted' }], veths: [], locks: ['/h/.coi/locks/x.lock'] };
    f.profiles = [{ name: 'default', config: { 'security.privileged': 'true' } }];
    const fixes = await applyFixes(evaluate(f), f, o);
    const by = Object.fromEntries(fixes.map((x) => [x.check, x]));
    assert.deepEqual(by.guard, { check: 'guard', action: 'starting the guard needs root: run sudo coi health --fix', outcome: 'skipped' });
    assert.equal(by.id_delegation!.outcome, 'skipped');
    assert.deepEqual(by.orphaned_resources, { check: 'orphaned_resources', action: 'would remove coi-1-1, /h/.coi/locks/x.lock', outcome: 'dry-run' });
    assert.equal(by.privileged_profile!.outcome, 'skipped', 'a profile is the user\'s: never changed');
    assert.match(by.privileged_profile!.action, /not changed automatically; to fix it: .*incus profile unset default security\.privileged/);
    f.user = { uid: 0, name: 'root', root: true };
    const asRoot = Object.fromEntries((await applyFixes(evaluate(f), f, o)).map((x) => [x.check, x]));
    assert.deepEqual([asRoot.guard!.outcome, asRoot.guard!.action], ['dry-run', 'would start the guard']);
    assert.equal(asRoot.id_delegation!.action, 'would delegate uid 1500 and gid 1500 to root in /etc/subuid and /etc/subgid');
  });
});

describe('the live checks', () => {
  test('restricted mode holds when the guard enforces rules and the private address is refused', () => {
    const c = checkOf(healthy(), 'network_restriction').check;
    assert.equal(c.status, 'ok');
    assert.match(c.message, /restricted mode holds: .*10\.99\.0\.2: did not answer ping, TCP port 80 refused/);
  });

  test('a private address that answers, with a guard that claims to enforce rules, fails', () => {
    const f = healthy();
    (f.live as { probe: ProbeOutcome }).probe = probe({ icmp: 'reply' });
    assert.equal(checkOf(f, 'network_restriction').check.status, 'failed');
    (f.live as { probe: ProbeOutcome }).probe = probe({ icmp: 'no-reply', tcp: 'connected' });
    assert.equal(checkOf(f, 'network_restriction').check.status, 'failed');
  });

  test('a guard without the "network" capability: a warning that says so, whatever the probe saw', () => {
    const f = healthy();
    f.guard = { reachable: true, socket: 's', version: '0.1.0', pid: 1, eventsConnected: true };
    (f.live as { probe: ProbeOutcome }).probe = probe({ icmp: 'reply' });
    const { check, report } = checkOf(f, 'network_restriction');
    assert.equal(check.status, 'warning');
    assert.match(check.message, /does not enforce network rules yet .*"network" capability.*answered ping/);
    assert.equal(exitCodeOf(report), 1);
  });

  test('no guard at all fails; open mode warns; a sandbox without network cannot vouch for anything', () => {
    const f = healthy();
    f.guard = { reachable: false, socket: 's', error: 'ENOENT' };
    assert.equal(checkOf(f, 'network_restriction').check.status, 'failed');
    const g = healthy();
    g.config = { ...g.config, networkMode: 'open' } as HealthFacts['config'];
    assert.match(checkOf(g, 'network_restriction').check.message, /"open"/);
    const h = healthy();
    (h.live as { probe: ProbeOutcome }).probe = probe({ icmp: 'no-reply', tcp: 'unreachable', address: undefined as unknown as string });
    delete (h.live as { probe: ProbeOutcome }).probe.address;
    assert.equal(checkOf(h, 'live_sandbox').check.status, 'failed');
    assert.match(checkOf(h, 'network_restriction').check.message, /not tested: .*no network/);
  });

  test('a sandbox that does not start fails with its own error and remedy; --no-live is a warning', () => {
    const f = healthy();
    f.live = { ran: true, started: false, error: 'refusing to launch: the Incus profile "default" sets security.privileged=true', remedy: { title: 'Unset it', shell: 'incus profile unset default security.privileged' } };
    const c = checkOf(f, 'live_sandbox').check;
    assert.equal(c.status, 'failed');
    assert.match(c.message, /profile "default"/);
    assert.equal(c.remedy?.shell, 'incus profile unset default security.privileged');
    f.live = { ran: false, why: 'skipped (--no-live)' };
    assert.equal(checkOf(f, 'live_sandbox').check.status, 'warning');
  });

  test('probe target: flag, then COI_HEALTH_TARGET, then the dead-end host, then a private default gateway', () => {
    assert.deepEqual(chooseTarget({ flag: '10.99.0.2:8080', env: '1.2.3.4' }), { address: '10.99.0.2', port: 8080 });
    assert.deepEqual(chooseTarget({ env: '192.168.5.1' }), { address: '192.168.5.1', port: 80 });
    assert.deepEqual(chooseTarget({ bridgeMode: 'dead-end', defaultGateway: '192.168.1.1' }), { address: '10.99.0.2', port: 80 });
    assert.deepEqual(chooseTarget({ bridgeMode: 'nat', defaultGateway: '192.168.1.1' }), { address: '192.168.1.1', port: 80 });
    assert.deepEqual(chooseTarget({ bridgeMode: 'nat', defaultGateway: '100.64.0.1' }), { address: '192.168.0.1', port: 80 });
    for (const bad of ['example.com', '10.0.0.256', '10.0.0.1:0', '10.0.0.1:70000', '']) assert.throws(() => parseTarget(bad), /IPv4 address/);
  });

  test('the probe output is read line by line; anything unexpected counts as an error, never as blocked', () => {
    const p = parseProbeOutput('addr=10.213.0.150/24\nroute=default via 10.213.0.2 dev eth0\nicmp=reply\ntcp=refused\nseccomp=2\nuidmap=         0    1000000 1000000000\n');
    assert.deepEqual(p, { icmp: 'reply', tcp: 'refused', address: '10.213.0.150/24', route: 'default via 10.213.0.2 dev eth0', seccomp: '2', uidMap: '         0    1000000 1000000000' });
    assert.equal(parseProbeOutput('tcp=error bash: weird').tcp, 'error');
    assert.equal(parseProbeOutput('').icmp, 'unavailable');
  });
});
