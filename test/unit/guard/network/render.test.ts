import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { CoiError, ErrorCodes } from '../../../../helper/errors';
import { parsePacketLogLine } from '../../../../helper/guard/network/kmsg';
import { sandboxKey } from '../../../../helper/guard/network/names';
import { renderRemoveAll, renderRuleset } from '../../../../helper/guard/network/render';
import type { NetworkState, SandboxNetwork } from '../../../../helper/guard/network/types';

const now = 1_700_000_000_000;

function sb(over: Partial<SandboxNetwork> & Pick<SandboxNetwork, 'container' | 'hostIface'>): SandboxNetwork {
  return { mode: 'restricted', gatewayV4: '10.250.0.1', allowLocalNetwork: false, allowCidrs: [], resolvedIps: [], ...over };
}

/** The body of one chain (between "chain <name> {" and its closing brace), without indentation. */
function chain(script: string, name: string): string[] {
  const lines = script.split('\n');
  const start = lines.findIndex((l) => l.trim() === `chain ${name} {`);
  assert.ok(start >= 0, `chain ${name} is rendered`);
  const out: string[] = [];
  for (let i = start + 1; i < lines.length && lines[i]!.trim() !== '}'; i++) out.push(lines[i]!.trim());
  return out;
}

function indexOfMatch(lines: string[], re: RegExp): number {
  const i = lines.findIndex((l) => re.test(l));
  assert.ok(i >= 0, `a line matches ${re}:\n${lines.join('\n')}`);
  return i;
}

function expectInvalid(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.INVALID_INPUT && re.test(e.message));
}

test('restricted: DNS and DHCP to the own gateway first, then every blocked range is logged and refused, the rest accepted', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'web', hostIface: 'vcoi-web' })], blockAll: [] }, { now });
  const c = chain(script, 'sb_web');
  const dns = indexOfMatch(c, /^ip daddr 10\.250\.0\.1 meta l4proto \{ tcp, udp \} th dport 53 accept$/);
  const dhcp = indexOfMatch(c, /^udp sport 68 udp dport 67 ip daddr \{ 10\.250\.0\.1, 255\.255\.255\.255 \} accept$/);
  const ranges: Array<[string, RegExp]> = [
    ['private', /ip daddr \{ 10\.0\.0\.0\/8, 172\.16\.0\.0\/12, 192\.168\.0\.0\/16 \}/],
    ['linklocal', /ip daddr 169\.254\.0\.0\/16/],
    ['cgnat', /ip daddr 100\.64\.0\.0\/10/],
    ['loopback', /ip daddr 127\.0\.0\.0\/8/],
    ['multicast', /ip daddr 224\.0\.0\.0\/4/],
    ['reserved', /ip daddr \{ 0\.0\.0\.0\/8, 192\.0\.0\.0\/24, 198\.18\.0\.0\/15, 240\.0\.0\.0\/4 \}/],
    ['host', /fib daddr type local/],
  ];
  for (const [rule, match] of ranges) {
    const log = indexOfMatch(c, new RegExp(`^${match.source} limit name "lg_web" log prefix "coi:reject:web:${rule} " level info$`));
    const ref = indexOfMatch(c, new RegExp(`^${match.source} goto refuse$`));
    assert.equal(ref, log + 1, `${rule}: refused right after its log line`);
    assert.ok(dns < log && dhcp < log, `${rule}: DNS/DHCP to the gateway come first`);
  }
  assert.equal(c[c.length - 1], 'accept');
  // The documentation ranges are the tests' "internet": never blocked.
  assert.doesNotMatch(script, /198\.51\.100|203\.0\.113|192\.0\.2\./);
  // refuse: instant reset for TCP, ICMP otherwise.
  assert.deepEqual(chain(script, 'refuse'), ['meta l4proto tcp reject with tcp reset', 'reject with icmpx admin-prohibited']);
});

test('restricted: DNS queries shaped like a tunnel are logged (not refused) before anything else, to any resolver', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'web', hostIface: 'vcoi-web' })], blockAll: [] }, { now });
  const c = chain(script, 'sb_web');
  const label = indexOfMatch(c, /^udp dport 53 @th,160,8 52-63 limit name "lg_web" log prefix "coi:log:web:dnslabel " level info$/);
  const long = indexOfMatch(c, /^udp dport 53 udp length >= 140 limit name "lg_web" log prefix "coi:log:web:dnslong " level info$/);
  const rate = indexOfMatch(c, /^udp dport 53 limit name "dq_web" limit name "lg_web" log prefix "coi:log:web:dnsrate " level info$/);
  const other = indexOfMatch(c, /^meta l4proto \{ tcp, udp \} th dport 53 ip daddr != 10\.250\.0\.1 limit name "lg_web" log prefix "coi:log:web:dnsext " level info$/);
  const accept = indexOfMatch(c, /th dport 53 accept$/);
  assert.ok(label < accept && long < accept && rate < accept && other < accept, 'noted before the resolver is accepted');
  for (const l of [label, long, rate, other]) assert.doesNotMatch(c[l]!, /accept|drop|goto|reject/, 'a note has no verdict');
  assert.match(script, /limit dq_web \{ rate over 120\/minute burst 60 packets \}/);
  // An allowlisted sandbox refuses all DNS (rule dns): nothing to note there.
  const al = renderRuleset({ sandboxes: [sb({ container: 'al', hostIface: 'v-al', mode: 'allowlist' })], blockAll: [] }, { now });
  assert.doesNotMatch(al, /dnslabel|dq_al/);
});

test('restricted: the ingress chain on the veth drops IPv6, VLAN and other L2 frames, counts, and marks IPv4 with the sandbox id', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'web', hostIface: 'vcoi-web' })], blockAll: [] }, { now });
  const c = chain(script, 'in_web');
  assert.equal(c[0], 'type filter hook ingress device "vcoi-web" priority -500; policy accept;');
  assert.equal(c[1], 'counter comment "coi:sandbox key=web iface=vcoi-web mode=restricted"');
  assert.ok(c.includes('meta protocol ip6 drop'));
  assert.ok(c.includes('ether type { 8021q, 8021ad } drop'));
  assert.ok(c.includes('meta protocol != { ip, arp } drop'));
  assert.ok(c.includes('meta protocol ip6 limit name "lg_web" log prefix "coi:drop:web:ipv6 " level info'));
  assert.equal(c[c.length - 1], 'meta protocol ip meta mark set meta mark and 0x0000ffff or 0x04010000');
  // The inet hooks dispatch on that mark, after letting established flows through.
  for (const hook of ['forward', 'input']) {
    assert.deepEqual(chain(script, hook), [
      `type filter hook ${hook} priority -300; policy accept;`,
      'ct state established,related accept',
      'meta mark and 0xffff0000 vmap { 0x04010000 : jump sb_web }',
    ]);
  }
  // The container's IP appears nowhere: root inside can change it.
  assert.doesNotMatch(script, /saddr/);
});

test('restricted with allowLocalNetwork: private ranges and the host are reachable, metadata, CGNAT and the rest stay blocked', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'lan', hostIface: 'vlan0x', allowLocalNetwork: true })], blockAll: [] }, { now });
  const c = chain(script, 'sb_lan').join('\n');
  assert.doesNotMatch(c, /:private |:host /);
  for (const r of ['linklocal', 'cgnat', 'loopback', 'multicast', 'reserved']) assert.match(c, new RegExp(`coi:reject:lan:${r} `));
});

test('allowlist: DHCP, then DNS refused to anyone, then the allow sets, then everything else refused', () => {
  const script = renderRuleset(
    {
      sandboxes: [
        sb({
          container: 'agent',
          hostIface: 'vcoi-agent',
          mode: 'allowlist',
          allowCidrs: ['198.51.100.3', '10.1.2.3/8', '10.5.0.0/16', '192.0.2.0/24', '198.51.100.3/32'],
          resolvedIps: [
            { ip: '198.51.100.2', expiresAt: now + 3_600_000 },
            { ip: '198.51.100.2', expiresAt: now + 60_500 },
            { ip: '198.51.100.7', expiresAt: now - 1 },
            { ip: '198.51.100.9' },
            { ip: '198.51.100.8', expiresAt: now + 400 * 86_400_000 },
          ],
        }),
      ],
      blockAll: [],
    },
    { now },
  );
  // Normalised: host bits cleared, covered ranges and duplicates gone, numerically sorted.
  assert.match(script, /set al_agent_net \{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tauto-merge\n\t\telements = \{ 10\.0\.0\.0\/8, 192\.0\.2\.0\/24, 198\.51\.100\.3 \}\n\t\}/);
  // The latest expiry wins; expired addresses are left out; timeouts are capped at a day; no expiry = no timeout.
  assert.match(script, /set al_agent_dns \{\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\telements = \{ 198\.51\.100\.2 timeout 3600s, 198\.51\.100\.8 timeout 86400s, 198\.51\.100\.9 \}\n\t\}/);
  const c = chain(script, 'sb_agent');
  assert.deepEqual(c, [
    'udp sport 68 udp dport 67 ip daddr { 10.250.0.1, 255.255.255.255 } accept',
    'meta l4proto { tcp, udp } th dport 53 limit name "lg_agent" log prefix "coi:reject:agent:dns " level info',
    'meta l4proto { tcp, udp } th dport 53 goto refuse',
    'ip daddr @al_agent_net accept',
    'ip daddr @al_agent_dns accept',
    'meta nfproto ipv4 limit name "lg_agent" log prefix "coi:reject:agent:notallowed " level info',
    'meta nfproto ipv4 goto refuse',
  ]);
  assert.ok(chain(script, 'in_agent').includes('meta protocol ip6 drop'));
});

test('allowlist with allowedPorts: only those TCP/UDP ports and ICMP echo on allowed addresses', () => {
  const script = renderRuleset(
    { sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowCidrs: [], resolvedIps: [], allowedPorts: [443, 80, 443] })], blockAll: [] },
    { now },
  );
  const c = chain(script, 'sb_a');
  assert.ok(c.includes('ip daddr @al_a_net meta l4proto { tcp, udp } th dport { 80, 443 } accept'));
  assert.ok(c.includes('ip daddr @al_a_dns icmp type echo-request accept'));
  assert.ok(!c.includes('ip daddr @al_a_net accept'));
  // Empty sets have no elements line (nft refuses "elements = { }").
  assert.doesNotMatch(script, /elements = \{ \}/);
});

test('network.hosts and an unblocked metadata endpoint: accepted (on their ports) before any refusal, in restricted and allowlist', () => {
  const hosts = [
    { ip: '10.99.0.2', ports: [8080, 443, 8080] },
    { ip: '192.168.1.5', ports: [] },
    // The same address twice: "every port" absorbs the ports of the other entry.
    { ip: '192.168.1.5', ports: [22] },
  ];
  const script = renderRuleset(
    {
      sandboxes: [
        sb({ container: 'r', hostIface: 'vr', allowMetadata: true, allowHosts: hosts }),
        sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowMetadata: true, allowHosts: hosts, allowedPorts: [443] }),
        sb({ container: 'plain', hostIface: 'vp' }),
      ],
      blockAll: [],
    },
    { now },
  );
  const want = ['ip daddr 10.99.0.2 meta l4proto { tcp, udp } th dport { 443, 8080 } accept', 'ip daddr 169.254.169.254 accept', 'ip daddr 192.168.1.5 accept'];
  const r = chain(script, 'sb_r');
  const firstRefusal = indexOfMatch(r, /goto refuse$/);
  for (const w of want) assert.ok(r.indexOf(w) >= 0 && r.indexOf(w) < firstRefusal, `restricted: "${w}" before the first refusal:\n${r.join('\n')}`);
  // The rest of link-local (and so metadata's neighbours) stays refused.
  assert.match(r.join('\n'), /ip daddr 169\.254\.0\.0\/16 goto refuse/);
  const a = chain(script, 'sb_a');
  const dns = indexOfMatch(a, /th dport 53 goto refuse$/);
  for (const w of want) assert.ok(a.indexOf(w) > dns && a.indexOf(w) < indexOfMatch(a, /notallowed/), `allowlist: "${w}" after the DNS refusal, before the final one`);
  // Neither leaks into another sandbox.
  assert.doesNotMatch(chain(script, 'sb_plain').join('\n'), /169\.254\.169\.254 accept|10\.99\.0\.2|192\.168\.1\.5/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'x', hostIface: 'vx', allowHosts: [{ ip: '10.0.0.300', ports: [] }] })], blockAll: [] }, { now }), /host address/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'x', hostIface: 'vx', allowHosts: [{ ip: '10.0.0.3', ports: [0] }] })], blockAll: [] }, { now }), /not a port/);
});

test('open: counted on the veth, never filtered, and no inet table when no sandbox is filtered', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'free', hostIface: 'vfree', mode: 'open', gatewayV4: '' })], blockAll: [] }, { now });
  assert.deepEqual(chain(script, 'in_free'), [
    'type filter hook ingress device "vfree" priority -500; policy accept;',
    'counter comment "coi:sandbox key=free iface=vfree mode=open"',
  ]);
  assert.doesNotMatch(script, /table inet coi_guard \{/);
  assert.doesNotMatch(script, /ip6|drop|reject/);
});

test('boot block: a drop-everything chain on the interface, logged as rule "boot"', () => {
  const script = renderRuleset({ sandboxes: [], blockAll: [{ container: 'new-1', hostIface: 'vnew1' }, { container: 'new-1', hostIface: 'vnew1' }] }, { now });
  assert.deepEqual(chain(script, 'boot_new-1'), [
    'type filter hook ingress device "vnew1" priority -500; policy drop;',
    'counter comment "coi:boot key=new-1 iface=vnew1"',
    'limit name "lg_new-1" log prefix "coi:drop:new-1:boot " level info',
  ]);
  assert.equal(script.match(/chain boot_new-1 \{/g)?.length, 1, 'a repeated boot entry renders once');
  expectInvalid(() => renderRuleset({ sandboxes: [], blockAll: [{ container: 'x', hostIface: 'v1' }, { container: 'x', hostIface: 'v2' }] }, { now }), /two interfaces/);
});

test('the script replaces our two tables as a whole and never names another table', () => {
  const script = renderRuleset({ sandboxes: [sb({ container: 'web', hostIface: 'vweb' })], blockAll: [{ container: 'n', hostIface: 'vn' }] }, { now });
  const lines = script.split('\n');
  assert.deepEqual(lines.slice(2, 6), ['table inet coi_guard', 'delete table inet coi_guard', 'table netdev coi_guard_ingress', 'delete table netdev coi_guard_ingress']);
  const tables = [...script.matchAll(/^\s*(?:delete )?table (\S+ \S+)/gm)].map((m) => m[1]);
  assert.deepEqual([...new Set(tables)].sort(), ['inet coi_guard', 'netdev coi_guard_ingress']);
  assert.doesNotMatch(script, /flush ruleset|incus|firewalld/);
});

test('the empty state removes everything: only the deletions', () => {
  const script = renderRuleset({ sandboxes: [], blockAll: [] }, { now });
  assert.equal(script, renderRemoveAll());
  assert.doesNotMatch(script, /\{/);
});

test('the same state renders byte-identical scripts, whatever order it comes in', () => {
  const a = sb({ container: 'alpha', hostIface: 'va', mode: 'allowlist', allowCidrs: ['198.51.100.0/24', '10.0.0.0/8'], resolvedIps: [{ ip: '198.51.100.9' }, { ip: '198.51.100.2', expiresAt: now + 90_000 }], allowedPorts: [443, 22] });
  const b = sb({ container: 'beta', hostIface: 'vb' });
  const c = sb({ container: 'gamma', hostIface: 'vg', mode: 'open' });
  const s1: NetworkState = { sandboxes: [a, b, c], blockAll: [{ container: 'z', hostIface: 'vz' }, { container: 'y', hostIface: 'vy' }] };
  const s2: NetworkState = {
    sandboxes: [c, b, { ...a, allowCidrs: [...a.allowCidrs].reverse(), resolvedIps: [...a.resolvedIps].reverse(), allowedPorts: [22, 443] }],
    blockAll: [...s1.blockAll].reverse(),
  };
  const r1 = renderRuleset(s1, { now });
  assert.equal(renderRuleset(s1, { now }), r1);
  assert.equal(renderRuleset(s2, { now }), r1);
  // Marks follow the sorted keys: alpha 1, beta 2; open gamma has none.
  assert.match(r1, /vmap \{ 0x04010000 : jump sb_alpha, 0x04020000 : jump sb_beta \}/);
});

test('hostile container names become safe, distinct keys; they cannot break out of a name or a string', () => {
  const hostile = ['evil"; flush ruleset; "', 'a b', 'a_b', 'x\n}\ntable ip t { }', '../../etc', 'ünïcode', 'x'.repeat(200), '-lead', '$(reboot)'];
  const keys = hostile.map(sandboxKey);
  for (const k of keys) assert.match(k, /^[A-Za-z0-9_-]{1,63}$/);
  assert.equal(new Set(keys).size, keys.length, 'no two hostile names share a key');
  assert.notEqual(sandboxKey('a b'), sandboxKey('a_b'), 'names that sanitise alike stay apart');
  assert.equal(sandboxKey('web-1'), 'web-1', 'an Incus name is its own key');
  assert.notEqual(sandboxKey('a b'), 'a_b');
  const script = renderRuleset({ sandboxes: hostile.map((container, i) => sb({ container, hostIface: `vh${i}` })), blockAll: [] }, { now });
  for (const h of hostile.filter((n) => /[^A-Za-z0-9_-]/.test(n))) assert.ok(!script.includes(h), `${JSON.stringify(h)} does not appear raw`);
  assert.doesNotMatch(script, /flush ruleset|\$\(|^table ip t/m);
  // Every quoted string holds only the characters we put there.
  for (const m of script.matchAll(/"([^"]*)"/g)) assert.match(m[1]!, /^[A-Za-z0-9_.:= -]*$/);
  // The longest name Incus allows still fits nft's 127-character log prefix.
  const long = 'n'.repeat(63);
  const longScript = renderRuleset({ sandboxes: [sb({ container: long, hostIface: 'vl', mode: 'allowlist' })], blockAll: [] }, { now });
  for (const m of longScript.matchAll(/log prefix "([^"]*)"/g)) assert.ok(m[1]!.length <= 127, `${m[1]} fits`);
});

test('every log prefix the renderer writes is read back by the kernel-log parser as its sandbox and rule', () => {
  const containers = ['web', 'evil"name'];
  const script = renderRuleset(
    {
      sandboxes: [sb({ container: 'web', hostIface: 'v1' }), sb({ container: 'evil"name', hostIface: 'v2', mode: 'allowlist' })],
      blockAll: [{ container: 'boot-me', hostIface: 'v3' }],
    },
    { now },
  );
  const prefixes = [...script.matchAll(/log prefix "([^"]*)"/g)].map((m) => m[1]!);
  assert.equal(prefixes.length, 14 + 5 + 1, 'restricted: 3 at ingress + 4 DNS notes + 7 ranges; allowlist: 3 + dns + notallowed; boot: 1');
  for (const p of prefixes) {
    const ev = parsePacketLogLine(`6,1,2,-;${p}IN=br0 OUT=eth0 SRC=10.0.0.5 DST=10.99.0.2 LEN=60 PROTO=TCP SPT=1 DPT=80 SYN`);
    assert.ok(ev, `parsed ${p}`);
    const [, action, key, rule] = p.trimEnd().split(':');
    assert.deepEqual([ev.action, ev.container, ev.rule], [action, key, rule]);
    assert.ok([...containers, 'boot-me'].map(sandboxKey).includes(ev.container));
  }
});

test('input that cannot be rendered safely is refused with INVALID_INPUT, never half-rendered', () => {
  const ok = sb({ container: 'a', hostIface: 'va' });
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'v"; drop' })], blockAll: [] }, { now }), /not a valid interface name/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'a-very-long-interface' })], blockAll: [] }, { now }), /not a valid interface name/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: '..' })], blockAll: [] }, { now }), /not a valid interface name/);
  expectInvalid(() => renderRuleset({ sandboxes: [ok, sb({ container: 'b', hostIface: 'va' })], blockAll: [] }, { now }), /both claim host interface va/);
  expectInvalid(() => renderRuleset({ sandboxes: [ok, sb({ container: 'a', hostIface: 'vb' })], blockAll: [] }, { now }), /share the rules key/);
  expectInvalid(() => renderRuleset({ sandboxes: [ok], blockAll: [{ container: 'b', hostIface: 'va' }] }, { now }), /belongs to/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', gatewayV4: '10.0.0' })], blockAll: [] }, { now }), /gateway/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowCidrs: ['2001:db8::/32'] })], blockAll: [] }, { now }), /IPv6 is always blocked/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowCidrs: ['10.0.0.0/33'] })], blockAll: [] }, { now }), /not an IPv4/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowCidrs: ['010.0.0.1'] })], blockAll: [] }, { now }), /not an IPv4/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', resolvedIps: [{ ip: 'example.com' }] })], blockAll: [] }, { now }), /not IPv4/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'allowlist', allowedPorts: [0] })], blockAll: [] }, { now }), /not a port/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: 'a', hostIface: 'va', mode: 'bogus' as never })], blockAll: [] }, { now }), /unknown network mode/);
  expectInvalid(() => renderRuleset({ sandboxes: [sb({ container: '', hostIface: 'va' })], blockAll: [] }, { now }), /without a container name/);
  // Open sandboxes need no gateway; allowlist fields are ignored outside allowlist mode.
  assert.doesNotThrow(() => renderRuleset({ sandboxes: [sb({ container: 'o', hostIface: 'vo', mode: 'open', gatewayV4: '', allowCidrs: ['junk'] })], blockAll: [] }, { now }));
});
