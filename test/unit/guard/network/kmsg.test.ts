import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { compressIpv6, parsePacketLogLine } from '../../../../helper/guard/network/kmsg';

// Real /dev/kmsg records and dmesg lines from the testbed, then lines the parser must refuse.
const lines = readFileSync(join(process.cwd(), 'test', 'fixtures', 'nft', 'kmsg-lines.txt'), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'));

test('a rejected TCP connection from the forward hook: sandbox, rule, addresses, ports, bridge port', () => {
  assert.deepEqual(parsePacketLogLine(lines[0]!), {
    action: 'reject',
    container: 'c-restricted',
    rule: 'private',
    seq: 809,
    monotonicUs: 1668086939,
    inIface: 'br0',
    outIface: 'rs0',
    physIn: 'nrxv1',
    family: 4,
    src: '10.250.0.10',
    dst: '10.99.0.2',
    proto: 'tcp',
    sport: 38658,
    dport: 80,
  });
});

test('UDP to the metadata range and DNS to the gateway (input hook: no OUT)', () => {
  const meta = parsePacketLogLine(lines[1]!)!;
  assert.deepEqual([meta.rule, meta.dst, meta.proto, meta.dport], ['linklocal', '169.254.169.254', 'udp', 80]);
  const dns = parsePacketLogLine(lines[2]!)!;
  assert.deepEqual([dns.container, dns.rule, dns.dst, dns.proto, dns.dport, dns.outIface], ['c-allow', 'dns', '10.250.0.1', 'udp', 53, undefined]);
});

test('an IPv6 drop at ingress: addresses compressed, ICMPv6 type kept', () => {
  const ev = parsePacketLogLine(lines[3]!)!;
  assert.deepEqual([ev.action, ev.rule, ev.family, ev.src, ev.dst, ev.proto, ev.icmpType, ev.inIface], ['drop', 'ipv6', 6, 'fd00::11', 'ff02::1:ff00:10', 'icmpv6', 135, 'nrxv2']);
});

test('dmesg lines, and L2 drops that carry no IP header', () => {
  const vlan = parsePacketLogLine(lines[5]!)!;
  assert.deepEqual([vlan.rule, vlan.monotonicUs, vlan.src, vlan.dst, vlan.proto], ['vlan', 1688377842, '10.77.0.10', '10.77.0.11', 'tcp']);
  const l2 = parsePacketLogLine(lines[6]!)!;
  assert.deepEqual([l2.rule, l2.inIface, l2.src, l2.family, l2.proto], ['l2', 'nrxv1', undefined, undefined, undefined]);
});

test('refused: userspace-written kmsg records, other kernel lines, look-alikes', () => {
  assert.match(lines[7]!, /^14,/);
  assert.equal(parsePacketLogLine(lines[7]!), undefined, 'facility 1 (user) cannot be our nft rule');
  assert.equal(parsePacketLogLine(lines[8]!), undefined);
  assert.equal(parsePacketLogLine(lines[9]!), undefined);
  assert.equal(parsePacketLogLine('<14>[  1.000000] coi:drop:x:boot IN=v OUT= SRC=1.1.1.1 DST=2.2.2.2 PROTO=UDP'), undefined);
  assert.equal(parsePacketLogLine('something coi:drop:x:boot IN=v'), undefined, 'the prefix must start the message');
});

test('a bare message (no header) and an ICMP echo', () => {
  const ev = parsePacketLogLine('coi:reject:web:notallowed IN=br0 OUT=eth0 SRC=10.0.0.5 DST=198.51.100.7 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 MARK=0x10000 ')!;
  assert.deepEqual([ev.container, ev.rule, ev.proto, ev.icmpType, ev.icmpCode, ev.dport, ev.seq], ['web', 'notallowed', 'icmp', 8, 0, undefined, undefined]);
});

test('IPv6 compression follows RFC 5952', () => {
  assert.equal(compressIpv6('fd00:0000:0000:0000:0000:0000:0000:0010'), 'fd00::10');
  assert.equal(compressIpv6('2001:0db8:0000:0001:0000:0000:0000:0001'), '2001:db8:0:1::1');
  assert.equal(compressIpv6('0000:0000:0000:0000:0000:0000:0000:0001'), '::1');
  assert.equal(compressIpv6('2001:0db8:0001:0000:0001:0000:0001:0001'), '2001:db8:1:0:1:0:1:1');
  assert.equal(compressIpv6('0000:0000:0000:0000:0000:0000:0000:0000'), '::');
  assert.equal(compressIpv6('not-an-address'), 'not-an-address');
});

test('a DNS query let through but noted (action log) is read as such', () => {
  const ev = parsePacketLogLine('6,900,1700000000,-;coi:log:web:dnslabel IN=coibr0 OUT= PHYSIN=vweb MAC=00 SRC=10.213.0.120 DST=10.213.0.1 LEN=130 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=40000 DPT=53 LEN=110 MARK=0x10000 ');
  assert.deepEqual([ev?.action, ev?.container, ev?.rule, ev?.proto, ev?.dst, ev?.dport], ['log', 'web', 'dnslabel', 'udp', '10.213.0.1', 53]);
  assert.equal(parsePacketLogLine('6,901,1700000000,-;coi:allow:web:dnslabel SRC=1.2.3.4 DST=1.2.3.5 PROTO=UDP'), undefined, 'only the actions we write');
});
