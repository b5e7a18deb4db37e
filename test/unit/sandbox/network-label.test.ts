import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { CoiError } from '../../../helper/errors';
import { buildInstanceSpec } from '../../../helper/sandbox/spec';
import { DEFAULT_NETWORK, encodeNetworkLabel, NetworkConfig, NetworkLabel, networkLabelFromConfig, parseNetworkLabel } from '../../../helper/sandbox/network-label';

const cfg = (over: Partial<NetworkConfig> = {}): NetworkConfig => ({
  mode: 'restricted',
  block_private_networks: true,
  allow_local_network_access: false,
  allowed_domains: ['registry.npmjs.org'],
  allowed_ports: [],
  refresh_interval_minutes: 30,
  dns_servers: [],
  block_metadata_endpoint: true,
  hosts: [],
  ...over,
});

test('restricted records only what restricted uses', () => {
  assert.deepEqual(networkLabelFromConfig(cfg()), { label: DEFAULT_NETWORK, warnings: [] });
  assert.equal(networkLabelFromConfig(cfg({ allow_local_network_access: true })).label.allowLocal, true);
  assert.equal(networkLabelFromConfig(cfg({ block_private_networks: false })).label.allowLocal, true);
});

test('allowlist splits addresses from names, dedupes, and leaves out (with a warning) entries with a port', () => {
  const { label, warnings } = networkLabelFromConfig(
    cfg({ mode: 'allowlist', allowed_domains: ['API.example.com', '198.51.100.3', '10.0.0.0/8', 'api.example.com', 'x.test:443'], allowed_ports: [443, 80, 443], dns_servers: ['10.213.0.2'] }),
  );
  assert.deepEqual(label, { v: 1, mode: 'allowlist', allowLocal: false, cidrs: ['198.51.100.3', '10.0.0.0/8'], domains: ['api.example.com'], ports: [80, 443], refreshMin: 30, dns: ['10.213.0.2'] });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /x\.test:443.*left out/);
});

test('block_metadata_endpoint = false and [[network.hosts]] are recorded; at their defaults the label is unchanged', () => {
  assert.deepEqual(networkLabelFromConfig(cfg({ block_metadata_endpoint: false })).label, { ...DEFAULT_NETWORK, metadata: true });
  const { label, warnings } = networkLabelFromConfig(
    cfg({
      hosts: [
        { ip: '10.99.0.2', hostnames: ['DB.lan', 'db'], ports: [5432] },
        { ip: '10.99.0.2', hostnames: ['db'], ports: [6432] },
        { ip: '192.168.1.9', hostnames: ['nas.lan'], ports: [] },
        { ip: '192.168.1.9', hostnames: ['nas'], ports: [445] },
      ],
    }),
  );
  assert.deepEqual(warnings, []);
  assert.deepEqual(label.hosts, [
    { ip: '10.99.0.2', names: ['db.lan', 'db'], ports: [5432, 6432] },
    { ip: '192.168.1.9', names: ['nas.lan', 'nas'], ports: [] },
  ]);
  assert.deepEqual(parseNetworkLabel(encodeNetworkLabel(label)), { ok: true, label, missing: false });
  // A hostile label cannot smuggle text into the rules or /etc/hosts.
  for (const hosts of [[{ ip: '1.2.3.4; flush ruleset', names: ['a'], ports: [] }], [{ ip: '1.2.3.4', names: ['a\n6.6.6.6 evil'], ports: [] }], [{ ip: '1.2.3.4', names: [], ports: [] }]]) {
    assert.equal(parseNetworkLabel(JSON.stringify({ ...DEFAULT_NETWORK, hosts })).ok, false, JSON.stringify(hosts));
  }
  assert.equal(parseNetworkLabel(JSON.stringify({ ...DEFAULT_NETWORK, metadata: false })).ok, false, 'metadata is only ever "true" or absent');
});

test('the label round-trips; a missing one means the defaults; anything else that does not parse is an error', () => {
  const { label } = networkLabelFromConfig(cfg({ mode: 'allowlist', allowed_domains: ['a.test'] }));
  assert.deepEqual(parseNetworkLabel(encodeNetworkLabel(label)), { ok: true, label, missing: false });
  assert.deepEqual(parseNetworkLabel(undefined), { ok: true, label: DEFAULT_NETWORK, missing: true });
  for (const bad of ['{', '{"v":1,"mode":"open"}', JSON.stringify({ ...label, mode: 'everything' }), JSON.stringify({ ...label, extra: 1 }), JSON.stringify({ ...label, cidrs: ['1.2.3.4; flush ruleset'] })]) {
    const r = parseNetworkLabel(bad);
    assert.equal(r.ok, false, bad);
  }
});

/** The instance spec of a plain shell sandbox with this network label. */
const specWith = (network: NetworkLabel) =>
  buildInstanceSpec({
    name: 'coi-12345678-1',
    image: 'coi-base',
    pool: 'coi',
    bridge: 'coibr0',
    workspace: '/w',
    slot: 1,
    kind: 'shell',
    tool: 'shell',
    persistent: false,
    session: 's',
    profile: 'default',
    ownerUid: 1000,
    ownerHome: '/home/alice',
    launcherPid: 1,
    idmap: { kind: 'shift' },
    protectedPaths: [],
    mounts: [],
    nesting: false,
    now: new Date(0),
    network,
  });

test('the instance carries the label (and a test guard\'s scope), and its NIC a fixed host-side name', () => {
  const spec = specWith({ ...DEFAULT_NETWORK, mode: 'open' });
  assert.equal(spec.config?.['user.coi.network'], '{"v":1,"mode":"open","allowLocal":false,"cidrs":[],"domains":[],"ports":[],"refreshMin":30}');
  assert.equal(spec.config?.['user.coi.guard-scope'], undefined);
  assert.match(spec.devices?.eth0?.host_name ?? '', /^coi[0-9a-f]{11}$/);
  assert.equal(spec.devices?.eth0?.['security.mac_filtering'], undefined, 'the nft backend needs no anti-spoofing keys');
});

test('backend = "firewalld": recorded in the label, the NIC locked to its MAC and addresses at creation; allowlist refused with a remedy', () => {
  const fw = networkLabelFromConfig(cfg({ backend: 'firewalld' }));
  assert.deepEqual(fw, { label: { ...DEFAULT_NETWORK, backend: 'firewalld' }, warnings: [] });
  assert.equal(encodeNetworkLabel(fw.label), '{"v":1,"mode":"restricted","allowLocal":false,"cidrs":[],"domains":[],"ports":[],"refreshMin":30,"backend":"firewalld"}');
  assert.deepEqual(parseNetworkLabel(encodeNetworkLabel(fw.label)), { ok: true, label: fw.label, missing: false });
  assert.equal(networkLabelFromConfig(cfg({ backend: 'nftables' })).label.backend, undefined, 'the default backend leaves the label as it was');
  assert.equal(networkLabelFromConfig(cfg({ backend: 'firewalld', mode: 'open' })).label.backend, 'firewalld');
  assert.throws(
    () => networkLabelFromConfig(cfg({ backend: 'firewalld', mode: 'allowlist' })),
    (e: unknown) => e instanceof CoiError && /allowlist" is not available with network.backend = "firewalld"/.test(e.message) && !!e.remedy?.shell?.includes('backend = "nftables"'),
  );
  assert.equal(parseNetworkLabel('{"v":1,"mode":"restricted","allowLocal":false,"cidrs":[],"domains":[],"ports":[],"refreshMin":30,"backend":"iptables"}').ok, false);
  const spec = specWith(fw.label);
  const nic = spec.devices?.eth0 ?? {};
  assert.deepEqual([nic['security.mac_filtering'], nic['security.ipv4_filtering'], nic['security.ipv6_filtering']], ['true', 'true', 'true']);
});
