import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import {
  antiSpoofingProblem,
  firewalldNames,
  isCoiObjectName,
  isNothingToDelete,
  ownerDescription,
  ownerOf,
  planInstall,
  planRemove,
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

test('the owner description round-trips for its scope only', () => {
  assert.equal(ownerOf(ownerDescription('coi-ab12-1', 'x'), 'x'), 'coi-ab12-1');
  assert.equal(ownerOf(`${ownerDescription('coi-ab12-1', '')}\n`, ''), 'coi-ab12-1');
  assert.equal(ownerOf(ownerDescription('coi-ab12-1', 'x'), ''), undefined);
  assert.equal(ownerOf('Public zone', ''), undefined);
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
  assert.throws(() => sandboxZoneXml({ ...SB, mode: 'open' }, MAC, ''), /open is not available/);
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
