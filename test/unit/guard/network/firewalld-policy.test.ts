import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  antiSpoofingProblem,
  diffFirewalld,
  firewalldNames,
  isCoiObjectName,
  isNothingToDelete,
  liveFirewalld,
  ownerDescription,
  ownerOf,
  planInstall,
  planRemove,
  planSync,
  sandboxObjects,
  sandboxPolicyXml,
  sandboxZoneXml,
} from '../../../../helper/guard/network/firewalld-policy';
import type { SandboxNetwork } from '../../../../helper/guard/network/types';

const SB: SandboxNetwork = {
  container: 'coi-ab12-1',
  hostIface: 'coi0123456789a',
  mode: 'restricted',
  gatewayV4: '10.213.0.1',
  allowLocalNetwork: false,
  allowCidrs: [],
  resolvedIps: [],
};
const MAC = '10:66:6A:83:43:D4';
const SAFE_NIC = { type: 'nic', 'security.mac_filtering': 'true', 'security.ipv4_filtering': 'true', 'security.ipv6_filtering': 'true' };

test('names fit firewalld limits (zone 17, policy 18), differ from each other, and depend on scope and container', () => {
  const n = firewalldNames('coi-ab12-1', '');
  assert.match(n.zone, /^coiz-[0-9a-f]{11}$/);
  assert.match(n.policy, /^coip-[0-9a-f]{11}$/);
  assert.ok(n.zone.length <= 17 && n.policy.length <= 18);
  assert.equal(n.zone.slice(5), n.policy.slice(5));
  assert.deepEqual(firewalldNames('coi-ab12-1', ''), n, 'stable');
  assert.notEqual(firewalldNames('coi-ab12-1', 'test1').zone, n.zone, 'another guard scope gets other objects');
  assert.notEqual(firewalldNames('coi-ab12-2', '').zone, n.zone);
  assert.ok(isCoiObjectName(n.zone) && isCoiObjectName(n.policy));
  for (const other of ['public', 'trusted', 'coiz-xyz', 'coiz-0123456789ab', 'allow-host-ipv6']) assert.equal(isCoiObjectName(other), false, other);
});

test('the owner description round-trips for its scope only, with the content version when given', () => {
  assert.deepEqual(ownerOf(ownerDescription('coi-ab12-1', 'x'), 'x'), { container: 'coi-ab12-1' });
  assert.deepEqual(ownerOf(`${ownerDescription('coi-ab12-1', '')}\n`, ''), { container: 'coi-ab12-1' });
  assert.deepEqual(ownerOf(ownerDescription('coi-ab12-1', '', '0123456789ab'), ''), { container: 'coi-ab12-1', version: '0123456789ab' });
  assert.equal(ownerOf(ownerDescription('coi-ab12-1', 'x', '0123456789ab'), ''), undefined);
  assert.equal(ownerOf(ownerDescription('coi-ab12-1', 'x'), ''), undefined);
  assert.equal(ownerOf('Public zone', ''), undefined);
});

test('a sandbox\'s objects carry one version, the hash of their content: any change of settings changes it', () => {
  const o = sandboxObjects(SB, MAC, 's1');
  assert.match(o.version, /^[0-9a-f]{12}$/);
  assert.deepEqual(o.names, firewalldNames(SB.container, 's1'));
  assert.ok(o.zoneXml.includes(`<short>coi sandbox coi-ab12-1 scope=s1 v=${o.version}</short>`));
  assert.ok(o.policyXml.includes(`<short>coi sandbox coi-ab12-1 scope=s1 v=${o.version}</short>`));
  assert.deepEqual(sandboxObjects(SB, MAC, 's1'), o, 'stable');
  for (const other of [sandboxObjects({ ...SB, allowLocalNetwork: true }, MAC, 's1'), sandboxObjects(SB, '10:66:6a:83:43:d5', 's1'), sandboxObjects({ ...SB, mode: 'open' }, MAC, 's1'), sandboxObjects({ ...SB, gatewayV4: '10.213.0.9' }, MAC, 's1')]) {
    assert.notEqual(other.version, o.version);
  }
});

test('open: the zone and the policy accept everything, still bound to the MAC', () => {
  const open = { ...SB, mode: 'open' as const, gatewayV4: '' };
  assert.equal(sandboxZoneXml(open, MAC, ''), ['<?xml version="1.0" encoding="utf-8"?>', '<zone target="ACCEPT">', '  <short>coi sandbox coi-ab12-1 scope=</short>', '  <source address="10:66:6a:83:43:d4"/>', '</zone>', ''].join('\n'));
  const p = sandboxPolicyXml(open, '');
  assert.match(p, /<policy target="ACCEPT" priority="-100">/);
  assert.doesNotMatch(p, /<rule/);
});

test('diff: install what is missing, partial or of another version; remove what no desired sandbox has; live = installed at the desired version', () => {
  const n = (c: string) => firewalldNames(c, '');
  const installed = new Map([
    ['same', { names: n('same'), zone: true, policy: true, version: 'aaaaaaaaaaaa' }],
    ['old', { names: n('old'), zone: true, policy: true, version: 'bbbbbbbbbbbb' }],
    ['half', { names: n('half'), zone: true, policy: false }],
    ['gone', { names: n('gone'), zone: true, policy: true, version: 'cccccccccccc' }],
  ]);
  const desired = new Map([
    ['same', { version: 'aaaaaaaaaaaa' }],
    ['old', { version: 'dddddddddddd' }],
    ['half', { version: 'eeeeeeeeeeee' }],
    ['new', { version: 'ffffffffffff' }],
  ]);
  assert.deepEqual(diffFirewalld(installed, desired), { install: ['half', 'new', 'old'], remove: ['gone'] });
  assert.deepEqual([...liveFirewalld(installed, desired)], ['same']);
  assert.deepEqual(diffFirewalld(installed, new Map()), { install: [], remove: ['gone', 'half', 'old', 'same'] }, 'no firewalld sandbox left: everything of this scope goes');

  const plan = planSync(installed, [
    { container: 'half', names: n('half'), zoneFile: '/t/hz', policyFile: '/t/hp' },
    { container: 'new', names: n('new'), zoneFile: '/t/nz', policyFile: '/t/np' },
  ], ['gone']);
  assert.deepEqual(plan, [
    ['--permanent', `--delete-policy=${n('gone').policy}`],
    ['--permanent', `--delete-zone=${n('gone').zone}`],
    ['--permanent', `--delete-zone=${n('half').zone}`],
    ['--permanent', '--new-zone-from-file=/t/hz', `--name=${n('half').zone}`],
    ['--permanent', '--new-policy-from-file=/t/hp', `--name=${n('half').policy}`],
    ['--permanent', '--new-zone-from-file=/t/nz', `--name=${n('new').zone}`],
    ['--permanent', '--new-policy-from-file=/t/np', `--name=${n('new').policy}`],
    ['--reload'],
  ]);
  assert.deepEqual(planSync(installed, [], []), [], 'nothing to do: not even a reload');
});

test('a NIC without Incus anti-spoofing, or without a MAC, is refused with the missing keys named', () => {
  assert.equal(antiSpoofingProblem(SAFE_NIC, MAC), undefined);
  assert.match(antiSpoofingProblem({ type: 'nic' }, MAC)!, /security\.mac_filtering=true, security\.ipv4_filtering=true, security\.ipv6_filtering=true/);
  assert.match(antiSpoofingProblem({ ...SAFE_NIC, 'security.ipv6_filtering': 'false' }, MAC)!, /lacks security\.ipv6_filtering=true/);
  assert.match(antiSpoofingProblem(SAFE_NIC, undefined)!, /no MAC address/);
  assert.match(antiSpoofingProblem(SAFE_NIC, 'zz:00')!, /no MAC address/);
});

test('the zone matches the MAC and lets through DHCP and DNS to the gateway only', () => {
  const xml = sandboxZoneXml(SB, MAC, '');
  assert.equal(
    xml,
    [
      '<?xml version="1.0" encoding="utf-8"?>',
      '<zone target="default">',
      '  <short>coi sandbox coi-ab12-1 scope=</short>',
      '  <source address="10:66:6a:83:43:d4"/>',
      '  <service name="dhcp"/>',
      '  <rule family="ipv4"><destination address="10.213.0.1"/><service name="dns"/><accept/></rule>',
      '</zone>',
      '',
    ].join('\n'),
  );
  assert.match(sandboxZoneXml({ ...SB, allowLocalNetwork: true }, MAC, ''), /<rule family="ipv4"><accept\/><\/rule>/);
});

test('the policy rejects the restricted ranges and IPv6, accepts the rest, exceptions first', () => {
  const xml = sandboxPolicyXml(SB, '');
  const { zone } = firewalldNames(SB.container, '');
  assert.match(xml, /<policy target="ACCEPT" priority="-100">/);
  assert.ok(xml.includes(`<ingress-zone name="${zone}"/>`));
  assert.ok(xml.includes('<egress-zone name="ANY"/>'));
  for (const c of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '127.0.0.0/8', '224.0.0.0/4', '240.0.0.0/4']) {
    assert.ok(xml.includes(`<rule priority="-20" family="ipv4"><destination address="${c}"/><reject type="icmp-admin-prohibited"/></rule>`), c);
  }
  assert.ok(xml.includes('<rule priority="-20" family="ipv6"><reject/></rule>'));
  assert.ok(!xml.includes('198.51.100'), 'the documentation ranges stay reachable (the tests\' "internet")');
  assert.ok(!xml.includes('<accept/>'), 'no exception without settings');

  const lan = sandboxPolicyXml({ ...SB, allowLocalNetwork: true }, '');
  assert.ok(!lan.includes('10.0.0.0/8') && lan.includes('169.254.0.0/16'), 'allow_local_network_access lifts the private ranges only');

  const ex = sandboxPolicyXml({ ...SB, allowMetadata: true, allowHosts: [{ ip: '10.99.0.2', ports: [443] }, { ip: '192.168.1.5', ports: [] }] }, '');
  assert.ok(ex.includes('<rule priority="-30" family="ipv4"><destination address="169.254.169.254"/><accept/></rule>'));
  assert.ok(ex.includes('<rule priority="-30" family="ipv4"><destination address="10.99.0.2"/><port port="443" protocol="tcp"/><accept/></rule>'));
  assert.ok(ex.includes('<rule priority="-30" family="ipv4"><destination address="10.99.0.2"/><port port="443" protocol="udp"/><accept/></rule>'));
  assert.ok(ex.includes('<rule priority="-30" family="ipv4"><destination address="192.168.1.5"/><accept/></rule>'));
  assert.ok(ex.indexOf('priority="-30"') < ex.indexOf('priority="-20"'));
});

test('bad input is refused, never written into firewalld XML', () => {
  assert.throws(() => sandboxZoneXml(SB, 'not-a-mac', ''), /not a MAC address/);
  assert.throws(() => sandboxZoneXml({ ...SB, gatewayV4: '10.213.0.1"/><accept/>' }, MAC, ''), /not an IPv4 address/);
  assert.throws(() => sandboxPolicyXml({ ...SB, allowHosts: [{ ip: '1.2.3.4"', ports: [] }] }, ''), /not an IPv4 address/);
  assert.throws(() => sandboxPolicyXml({ ...SB, allowHosts: [{ ip: '1.2.3.4', ports: [70000] }] }, ''), /not between 1 and 65535/);
  assert.throws(() => sandboxPolicyXml({ ...SB, mode: 'allowlist' }, ''), /allowlist is not available with backend = "firewalld"/);
  assert.ok(sandboxZoneXml({ ...SB, container: 'a<b&"c' }, MAC, '').includes('<short>coi sandbox a&lt;b&amp;&quot;c scope=</short>'));
});

test('install deletes older objects (policy before zone), creates both permanent and reloads; remove likewise', () => {
  const n = firewalldNames('c', '');
  assert.deepEqual(planInstall(n, '/t/z.xml', '/t/p.xml'), [
    ['--permanent', `--delete-policy=${n.policy}`],
    ['--permanent', `--delete-zone=${n.zone}`],
    ['--permanent', '--new-zone-from-file=/t/z.xml', `--name=${n.zone}`],
    ['--permanent', '--new-policy-from-file=/t/p.xml', `--name=${n.policy}`],
    ['--reload'],
  ]);
  assert.deepEqual(planRemove(n), [['--permanent', `--delete-policy=${n.policy}`], ['--permanent', `--delete-zone=${n.zone}`], ['--reload']]);
  assert.equal(isNothingToDelete(['--permanent', '--delete-zone=x'], 'Error: INVALID_ZONE: x'), true);
  assert.equal(isNothingToDelete(['--permanent', '--delete-policy=x'], 'Error: INVALID_POLICY: x'), true);
  assert.equal(isNothingToDelete(['--reload'], 'Error: INVALID_ZONE: x'), false);
});
