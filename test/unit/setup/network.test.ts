import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { DEAD_END_HOSTS } from '../../../helper/setup/names';
import { queryLogOf } from '../../../helper/guard/monitor/dns-log';
import { bridgeConfig, cidrsOverlap, configDiff, deadEndForwardDrop, deadEndNamespaceCommands, pickSubnet, subnetFromBase, subnetFromBridgeAddress } from '../../../helper/setup/network';

test('pickSubnet skips subnets the host already routes', () => {
  assert.equal(pickSubnet([]).host, '10.213.0.1');
  assert.equal(pickSubnet(['10.213.0.0/24', '172.17.0.0/16']).host, '10.214.0.1');
});

test('pickSubnet throws when every candidate overlaps', () => {
  assert.throws(() => pickSubnet(['10.0.0.0/8']), /no free 10\.x/);
});

test('cidrsOverlap sees containment both ways', () => {
  assert.ok(cidrsOverlap('10.0.0.0/8', '10.213.0.0/24'));
  assert.ok(cidrsOverlap('10.213.0.5/32', '10.213.0.0/24'));
  assert.ok(!cidrsOverlap('10.214.0.0/24', '10.213.0.0/24'));
});

test('a NAT bridge for users, a dead-end bridge for tests that forwards no DNS and routes to the test gateway', () => {
  const s = subnetFromBase('10.213.0');
  const nat = bridgeConfig(s, false);
  assert.equal(nat['ipv4.nat'], 'true');
  assert.equal(nat['ipv6.address'], 'none');
  // Both modes log every query, with its source, to Incus's directory of the bridge (the monitor reads it).
  assert.equal(nat['raw.dnsmasq'], 'log-queries=extra\nlog-facility=/var/lib/incus/networks/coibr0/coi-dns-queries.log');
  assert.deepEqual(queryLogOf(nat['raw.dnsmasq']), { path: '/var/lib/incus/networks/coibr0/coi-dns-queries.log', extra: true });
  const dead = bridgeConfig(s, true);
  assert.equal(dead['ipv4.nat'], 'false');
  assert.equal(dead['ipv4.address'], '10.213.0.1/24');
  assert.match(dead['raw.dnsmasq']!, /dhcp-option=option:router,10\.213\.0\.2/);
  assert.match(dead['raw.dnsmasq']!, /^no-resolv$/m);
  assert.match(dead['raw.dnsmasq']!, /^log-queries=extra$/m);
  assert.equal(queryLogOf(bridgeConfig(s, true, '/srv/incus/networks/coibr0/q.log')['raw.dnsmasq'])?.path, '/srv/incus/networks/coibr0/q.log');
  assert.equal(dead['user.coi.mode'], 'dead-end');
});

test('subnetFromBridgeAddress reads back only our /24 shape', () => {
  assert.deepEqual(subnetFromBridgeAddress('10.220.0.1/24'), subnetFromBase('10.220.0'));
  assert.equal(subnetFromBridgeAddress('10.220.0.5/16'), undefined);
  assert.equal(subnetFromBridgeAddress(undefined), undefined);
});

test('configDiff lists only keys whose value must change', () => {
  assert.deepEqual(configDiff({ a: '1', b: '2', extra: 'x' }, { a: '1', b: '3', c: '4' }), { b: '3', c: '4' });
});

test('the forward-drop script recreates its table in one transaction and drops routed bridge traffic', () => {
  const script = deadEndForwardDrop('coibr0');
  assert.match(script, /^table inet coi_deadend\ndelete table inet coi_deadend\ntable inet coi_deadend \{/);
  assert.match(script, /iifname "coibr0" oifname != "coibr0" counter drop/);
  assert.match(script, /priority -300/);
});

test('the namespace commands create only what is missing and give the gateway every test address', () => {
  const s = subnetFromBase('10.213.0');
  const fresh = deadEndNamespaceCommands(s, { namespace: false, veth: false }).map((a) => a.join(' '));
  assert.equal(fresh[0], 'netns add coi-deadend');
  assert.match(fresh[1]!, /^link add coi-deadend0 type veth peer name eth0 netns coi-deadend$/);
  assert.ok(fresh.includes('-n coi-deadend addr replace 10.213.0.2/24 dev eth0'));
  for (const a of Object.values(DEAD_END_HOSTS)) assert.ok(fresh.includes(`-n coi-deadend addr replace ${a}/32 dev lo`), a);
  assert.ok(!Object.values(DEAD_END_HOSTS).some((a) => a.startsWith('203.0.113.')), 'never the registries range');
  const again = deadEndNamespaceCommands(s, { namespace: true, veth: true }).map((a) => a.join(' '));
  assert.ok(!again.some((c) => c.startsWith('netns add') || c.startsWith('link add')));
});
