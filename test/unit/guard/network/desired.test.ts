import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { desiredFirewalld, desiredState, gatewayOf, inScope, managedSandboxOf } from '../../../../helper/guard/network/desired';
import { firewalldNames } from '../../../../helper/guard/network/firewalld-policy';
import { tablesFor } from '../../../../helper/guard/network/names';
import { renderRuleset } from '../../../../helper/guard/network/render';
import type { InstanceFull } from '../../../../helper/incus/types';
import { encodeNetworkLabel, NetworkLabel } from '../../../../helper/sandbox/network-label';

const restricted: NetworkLabel = { v: 1, mode: 'restricted', allowLocal: false, cidrs: [], domains: [], ports: [], refreshMin: 30 };

function inst(name: string, over: { config?: Record<string, string>; nics?: Record<string, Record<string, string>>; label?: NetworkLabel | string | null } = {}): InstanceFull {
  const label = over.label === undefined ? restricted : over.label;
  const config: Record<string, string> = { 'user.coi.managed': 'true', ...(label === null ? {} : { 'user.coi.network': typeof label === 'string' ? label : encodeNetworkLabel(label) }), ...over.config };
  const devices = over.nics ?? { eth0: { type: 'nic', network: 'coibr0', host_name: `v-${name}`.slice(0, 15) } };
  return { name, status: 'Stopped', status_code: 102, type: 'container', created_at: '', config, devices: {}, expanded_devices: { root: { type: 'disk', path: '/' }, ...devices }, profiles: ['default'] };
}

const gateways = new Map([['coibr0', '10.213.0.1']]);

test('only managed instances of the guard\'s own scope are its sandboxes', () => {
  assert.equal(managedSandboxOf(inst('a', { config: { 'user.coi.managed': 'false' } }), ''), undefined);
  assert.equal(managedSandboxOf(inst('a', { config: { 'user.coi.guard-scope': 'tx1' } }), ''), undefined, 'the host guard leaves a test guard\'s sandboxes alone');
  assert.equal(managedSandboxOf(inst('a'), 'tx1'), undefined, 'a test guard leaves the host guard\'s sandboxes alone');
  assert.ok(managedSandboxOf(inst('a', { config: { 'user.coi.guard-scope': 'tx1' } }), 'tx1'));
  assert.equal(inScope(inst('a'), ''), true);
});

test('the interface comes from the NIC\'s host_name and the gateway from its network, never from a label', () => {
  const sb = managedSandboxOf(inst('web'), '')!;
  assert.deepEqual([sb.hostIface, sb.bridge, sb.label?.mode, sb.labelMissing], ['v-web', 'coibr0', 'restricted', false]);
  const d = desiredState([sb], { gateways, resolved: new Map() });
  assert.deepEqual(d.state.sandboxes, [{ container: 'web', hostIface: 'v-web', mode: 'restricted', gatewayV4: '10.213.0.1', allowLocalNetwork: false, allowCidrs: [], resolvedIps: [] }]);
  assert.deepEqual(d.fenced, ['web']);
});

test('allowlist: CIDRs, ports and the resolved addresses; open needs no gateway', () => {
  const al: NetworkLabel = { ...restricted, mode: 'allowlist', cidrs: ['198.51.100.3/32'], domains: ['allowed.test'], ports: [443] };
  const d = desiredState([managedSandboxOf(inst('a', { label: al }), '')!, managedSandboxOf(inst('o', { label: { ...restricted, mode: 'open' }, nics: { eth0: { type: 'nic', parent: 'elsewhere', nictype: 'bridged', host_name: 'v-o' } } }), '')!], {
    gateways,
    resolved: new Map([['a', [{ ip: '198.51.100.2', expiresAt: 5 }]]]),
  });
  assert.deepEqual(d.state.sandboxes.map((s) => [s.container, s.mode, s.allowCidrs, s.resolvedIps, s.allowedPorts, s.gatewayV4]), [
    ['a', 'allowlist', ['198.51.100.3/32'], [{ ip: '198.51.100.2', expiresAt: 5 }], [443], '10.213.0.1'],
    ['o', 'open', [], [], undefined, ''],
  ]);
});

test('what cannot be fenced is never left open: bad labels and unknown gateways block everything; unnamed or extra NICs are reported', () => {
  const sandboxes = [
    inst('bad-label', { label: '{"v":1,"mode":"wide-open"}' }),
    inst('not-json', { label: 'mode=open' }),
    inst('no-gateway', { nics: { eth0: { type: 'nic', network: 'unknownbr', host_name: 'v-ng' } } }),
    inst('no-host-name', { nics: { eth0: { type: 'nic', network: 'coibr0' } } }),
    inst('two-nics', { nics: { eth0: { type: 'nic', network: 'coibr0', host_name: 'v-2a' }, eth1: { type: 'nic', network: 'coibr0', host_name: 'v-2b' } } }),
    inst('no-nic', { nics: {} }),
    inst('dup-a', { nics: { eth0: { type: 'nic', network: 'coibr0', host_name: 'v-same' } } }),
    inst('dup-b', { nics: { eth0: { type: 'nic', network: 'coibr0', host_name: 'v-same' } } }),
    inst('old', { label: null }),
  ].map((i) => managedSandboxOf(i, '')!);
  const d = desiredState(sandboxes, { gateways, resolved: new Map() });
  assert.deepEqual(d.state.blockAll, [
    { container: 'bad-label', hostIface: 'v-bad-label' },
    { container: 'no-gateway', hostIface: 'v-ng' },
    { container: 'not-json', hostIface: 'v-not-json' },
  ]);
  assert.deepEqual(d.blocked.map((b) => b.container), ['bad-label', 'no-gateway', 'not-json']);
  assert.match(d.blocked.find((b) => b.container === 'bad-label')!.problem, /user\.coi\.network is invalid: mode/);
  assert.deepEqual(d.unfenced.map((u) => u.container), ['dup-b', 'no-host-name', 'two-nics']);
  assert.match(d.unfenced.find((u) => u.container === 'dup-b')!.problem, /claimed by dup-a/);
  // No label at all (an older COI): the defaults, restricted.
  assert.deepEqual(d.fenced, ['dup-a', 'old']);
  assert.equal(d.state.sandboxes.find((s) => s.container === 'old')?.mode, 'restricted');
  // Whatever it is, it renders: one bad sandbox never stops the others' rules.
  assert.match(renderRuleset(d.state, { now: 0 }), /chain boot_bad-label/);
});

test('a scoped guard renders into its own tables and numbers its sandboxes apart from the host guard\'s', () => {
  const d = desiredState([managedSandboxOf(inst('t1', { config: { 'user.coi.guard-scope': 'tx1' } }), 'tx1')!], { gateways, resolved: new Map() });
  const script = renderRuleset(d.state, { now: 0, tables: tablesFor('tx1'), tag: 3 });
  assert.match(script, /^table inet coi_guard_tx1 \{$/m);
  assert.match(script, /^table netdev coi_guard_ingress_tx1 \{$/m);
  assert.doesNotMatch(script, /table inet coi_guard \{|coi_guard_ingress \{/);
  assert.match(script, /vmap \{ 0x0c010000 : jump sb_t1 \}/);
  assert.throws(() => tablesFor('Bad scope'));
});

test('gatewayOf reads a bridge\'s ipv4.address', () => {
  assert.equal(gatewayOf('10.213.0.1/24'), '10.213.0.1');
  assert.equal(gatewayOf('none'), undefined);
  assert.equal(gatewayOf(undefined), undefined);
});

test('backend = "firewalld": objects from the listing (MAC, anti-spoofing keys, gateway); blocked by the guard until they are live, then only counted', () => {
  const fwl: NetworkLabel = { ...restricted, backend: 'firewalld' };
  const safe = { type: 'nic', network: 'coibr0', 'security.mac_filtering': 'true', 'security.ipv4_filtering': 'true', 'security.ipv6_filtering': 'true' };
  const sandboxes = [
    inst('fw', { label: fwl, config: { 'volatile.eth0.hwaddr': '10:66:6a:00:00:01' }, nics: { eth0: { ...safe, host_name: 'v-fw' } } }),
    inst('fw-open', { label: { ...fwl, mode: 'open' }, config: { 'volatile.eth0.hwaddr': '10:66:6a:00:00:02' }, nics: { eth0: { ...safe, host_name: 'v-fwo' } } }),
    inst('spoofable', { label: fwl, config: { 'volatile.eth0.hwaddr': '10:66:6a:00:00:03' }, nics: { eth0: { type: 'nic', network: 'coibr0', host_name: 'v-sp' } } }),
    inst('fw-allow', { label: { ...fwl, mode: 'allowlist' }, config: { 'volatile.eth0.hwaddr': '10:66:6a:00:00:04' }, nics: { eth0: { ...safe, host_name: 'v-fwa' } } }),
    inst('nft', {}),
  ].map((i) => managedSandboxOf(i, '')!);
  const fw = desiredFirewalld(sandboxes, gateways, 'sc');
  assert.deepEqual([...fw.objects.keys()].sort(), ['fw', 'fw-open']);
  assert.deepEqual(fw.objects.get('fw')!.names, firewalldNames('fw', 'sc'));
  assert.ok(fw.objects.get('fw')!.zoneXml.includes('<source address="10:66:6a:00:00:01"/>'));
  assert.ok(fw.objects.get('fw')!.zoneXml.includes('<destination address="10.213.0.1"/>'), 'DNS to the bridge\'s gateway');
  assert.match(fw.problems.get('spoofable')!, /matches a sandbox by its MAC, but its interface lacks security\.mac_filtering=true/);
  assert.match(fw.problems.get('fw-allow')!, /allowlist is not available with backend = "firewalld"/);

  // Nothing live yet: every firewalld sandbox is boot-blocked; the nft one is fenced as always.
  const problems = new Map([...fw.problems].map(([c, problem]) => [c, { problem }]));
  const before = desiredState(sandboxes, { gateways, resolved: new Map(), firewalld: { live: new Set(), problems } });
  assert.deepEqual(before.fenced, ['nft']);
  assert.deepEqual(before.state.blockAll.map((b) => b.container), ['fw', 'fw-allow', 'fw-open', 'spoofable']);
  assert.match(before.blocked.find((b) => b.container === 'fw')!.problem, /firewalld zone and policy are not in place yet/);

  // Live: no boot block, and the guard's tables only count (no decisions in the inet table).
  problems.set('fw-open', { problem: 'firewalld is not running', remedy: { title: 'Start firewalld' } } as never);
  const after = desiredState(sandboxes, { gateways, resolved: new Map(), firewalld: { live: new Set(['fw']), problems } });
  assert.deepEqual(after.fenced, ['fw', 'nft']);
  assert.equal(after.state.sandboxes.find((x) => x.container === 'fw')?.backend, 'firewalld');
  assert.deepEqual(after.blocked.find((b) => b.container === 'fw-open')?.remedy, { title: 'Start firewalld' });
  const script = renderRuleset(after.state, { now: 0 });
  assert.match(script, /chain in_fw \{\n\t\ttype filter hook ingress device "v-fw" priority -500; policy accept;\n\t\tcounter comment "coi:sandbox key=fw iface=v-fw mode=restricted backend=firewalld"\n\t\}/);
  assert.doesNotMatch(script, /chain sb_fw /);
  assert.doesNotMatch(script, /chain boot_fw /);
  assert.match(script, /chain sb_nft /);
  assert.match(script, /chain boot_fw-open /);

  // Without a label saying firewalld, no objects: a sandbox switched back to nftables loses its objects.
  assert.equal(desiredFirewalld([managedSandboxOf(inst('nft'), '')!], gateways, '').objects.size, 0);
});
