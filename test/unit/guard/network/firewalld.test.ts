import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseZoneInfo, parseZoneOf, planBridgeZone, zoneBlocks } from '../../../../helper/guard/network/firewalld';
import { FirewallCmdResult, FirewalldZoneKeeper } from '../../../../helper/guard/network/firewalld-runner';
import type { Log } from '../../../../helper/log';

// `firewall-cmd --info-zone=public` of Debian's firewalld 1.3.
const PUBLIC = `public (active)
  target: default
  icmp-block-inversion: no
  interfaces: eth1
  sources: 
  services: dhcpv6-client ssh
  ports: 
  protocols: 
  forward: yes
  masquerade: no
  forward-ports: 
  source-ports: 
  icmp-blocks: 
  rich rules: 
\trule family="ipv4" source address="10.0.0.0/8" accept
`;

test('zone info parses target, interfaces, services, ports, forward and rich rules', () => {
  assert.deepEqual(parseZoneInfo(PUBLIC), {
    name: 'public',
    target: 'default',
    interfaces: ['eth1'],
    services: ['dhcpv6-client', 'ssh'],
    ports: [],
    forward: true,
    richRules: ['rule family="ipv4" source address="10.0.0.0/8" accept'],
  });
  assert.equal(parseZoneInfo(''), undefined);
  assert.equal(parseZoneInfo('Error: INVALID_ZONE: nope'), undefined);
});

test('what a zone blocks of sandbox traffic: nothing in trusted; DHCP, DNS and forwarding in public; open services and ports count', () => {
  assert.deepEqual(zoneBlocks(parseZoneInfo(PUBLIC.replace('target: default', 'target: ACCEPT'))!), []);
  const pub = zoneBlocks(parseZoneInfo(PUBLIC)!);
  assert.equal(pub.length, 4);
  assert.match(pub[0]!, /^DHCP /);
  assert.match(pub[1]!, /^DNS /);
  assert.match(pub[2]!, /forwarded .* "public" has target default/);
  assert.match(pub[3]!, /1 rich rule/);
  const opened = zoneBlocks({ ...parseZoneInfo(PUBLIC)!, services: ['dhcp'], ports: ['50-60/udp', '53/tcp'], richRules: [] });
  assert.deepEqual(opened.map((b) => b.split(' ')[0]), ['traffic'], 'dhcp as a service, DNS as ports: only forwarding is left');
  assert.match(zoneBlocks({ ...parseZoneInfo(PUBLIC)!, forward: false })[2]!, /and no forwarding/);
});

test('the bridge plan: bind to trusted (now and permanently) only when the bridge merely fell into a blocking default zone', () => {
  const bind = [
    ['--zone=trusted', '--add-interface=coibr0'],
    ['--permanent', '--zone=trusted', '--add-interface=coibr0'],
  ];
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'public' }), { zone: 'trusted', explicit: false, commands: bind });
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'trusted' }), { zone: 'trusted', explicit: false, commands: [] });
  // An administrator's zone is theirs.
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'public', runtimeZone: 'internal', permanentZone: 'internal' }), { zone: 'internal', explicit: true, commands: [] });
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'public', runtimeZone: 'trusted', permanentZone: 'trusted' }).commands, []);
  // Trusted now but not in the permanent configuration: a reload would undo it.
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'public', runtimeZone: 'trusted' }).commands, [bind[1]]);
  // Bound permanently but not applied yet: applied now, in that zone.
  assert.deepEqual(planBridgeZone({ bridge: 'coibr0', defaultZone: 'public', permanentZone: 'dmz' }), { zone: 'dmz', explicit: true, commands: [['--zone=dmz', '--add-interface=coibr0']] });
  assert.equal(parseZoneOf('no zone\n', 2), undefined);
  assert.equal(parseZoneOf('public\n', 0), 'public');
  assert.equal(parseZoneOf('', 0), undefined);
});

test('the guard binds a bridge once per firewalld (pid), logs what it did, and tries again after an error', async () => {
  const calls: string[] = [];
  let pid: number | undefined = 100;
  let fail = true;
  const lines: string[] = [];
  const log: Log = { debug: () => undefined, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
  const bound = new Set<string>();
  const keeper = new FirewalldZoneKeeper({
    log,
    pid: async () => pid,
    cmd: async (args): Promise<FirewallCmdResult> => {
      calls.push(args.join(' '));
      const a = args.join(' ');
      if (a === '--get-default-zone') return fail ? { exitCode: 252, stdout: '', stderr: 'FirewallD is not running' } : { exitCode: 0, stdout: 'public\n', stderr: '' };
      const zoneOf = /--get-zone-of-interface=(\S+)/.exec(a);
      if (zoneOf) return bound.has(zoneOf[1]!) ? { exitCode: 0, stdout: 'trusted\n', stderr: '' } : { exitCode: 2, stdout: 'no zone\n', stderr: '' };
      const add = /--add-interface=(\S+)/.exec(a);
      if (add) {
        bound.add(add[1]!);
        return { exitCode: 0, stdout: 'success\n', stderr: '' };
      }
      return { exitCode: 1, stdout: '', stderr: `unexpected ${a}` };
    },
  });
  await keeper.check(['coibr0']);
  assert.match(lines.join('\n'), /warn cannot see to firewalld's zone of coibr0/);
  fail = false;
  await keeper.check(['coibr0', 'coibr0']);
  assert.ok(calls.includes('--zone=trusted --add-interface=coibr0') && calls.includes('--permanent --zone=trusted --add-interface=coibr0'));
  assert.match(lines.join('\n'), /info firewalld runs: coibr0 is now in its "trusted" zone/);
  const n = calls.length;
  await keeper.check(['coibr0']);
  assert.equal(calls.length, n, 'the same firewalld: nothing asked');
  pid = undefined;
  await keeper.check(['coibr0']);
  pid = 200;
  await keeper.check(['coibr0']);
  assert.ok(calls.length > n, 'a new firewalld: asked again');
  assert.equal(calls.filter((c) => c === '--zone=trusted --add-interface=coibr0').length, 1, 'already trusted: not bound twice');
});
