import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { formatIPv6, inCidr, ipv6ToBytes, isMetadata, isPrivate, normalizeAddress, parseCidr } from '../../../helper/guard/monitor/ip';
import { decodeText, parseFdTarget, parseIo, parseNetTable, parseNsLink, parseStat, parseStatus, splitCmdline, stripDeleted } from '../../../helper/guard/monitor/procfs';

// Real lines from this kernel (cat /proc/net/tcp), plus constructed ones.
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1082 1 000000007d074789 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:115C 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1
   2: 0100D50A:0035 FEA9FEA9:0050 02 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0
   3: garbage line
   4: 0100007F:1F90 0100007F:C000 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
`;

test('net/tcp rows decode little-endian addresses, hex ports, states and inodes; junk lines are skipped', () => {
  const rows = parseNetTable(TCP, 'tcp');
  assert.equal(rows.length, 4);
  assert.deepEqual(rows[0], { proto: 'tcp', family: 4, localAddress: '0.0.0.0', localPort: 2024, remoteAddress: '0.0.0.0', remotePort: 0, state: 'LISTEN', uid: 0, inode: 1082 });
  assert.equal(rows[1]?.localAddress, '127.0.0.1');
  assert.equal(rows[1]?.remotePort, 4444);
  assert.equal(rows[1]?.state, 'ESTABLISHED');
  assert.equal(rows[1]?.uid, 1000);
  assert.equal(rows[2]?.remoteAddress, '169.254.169.254');
  assert.equal(rows[2]?.localAddress, '10.213.0.1');
  assert.equal(rows[2]?.state, 'SYN_SENT');
  assert.equal(rows[3]?.state, 'TIME_WAIT');
  assert.equal(rows[3]?.inode, 0);
});

test('net/tcp6 rows: four host-order words per address, IPv4-mapped unwrapped to dotted quad', () => {
  const text = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:8000 0000000000000000FFFF00000100007F:115C 01 00000000:00000000 00:00000000 00000000     0        0 12 1 0 100 0 0 10 0
   2: B80D0120000000000000000001000000:8001 C20E00FD000000000000000054020000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 13 1 0 100 0 0 10 0
`;
  const rows = parseNetTable(text, 'tcp6');
  assert.equal(rows[0]?.localAddress, '::1');
  assert.equal(rows[0]?.family, 6);
  assert.equal(rows[1]?.remoteAddress, '127.0.0.1');
  assert.equal(rows[1]?.remotePort, 4444);
  assert.equal(rows[2]?.localAddress, '2001:db8::1');
  assert.equal(rows[2]?.remoteAddress, 'fd00:ec2::254');
  assert.equal(rows[2]?.remotePort, 443);
});

test('net tables on a big-endian kernel decode too', () => {
  const text = 'hdr\n 0: 7F000001:1F90 0A000002:115C 01 0:0 0:0 0 0 0 99 1\n';
  const rows = parseNetTable(text, 'udp', false);
  assert.equal(rows[0]?.localAddress, '127.0.0.1');
  assert.equal(rows[0]?.remoteAddress, '10.0.0.2');
  assert.equal(rows[0]?.proto, 'udp');
});

test('stat: comm may hold spaces and ")", fields are counted after the last ")"', () => {
  const line = '4242 (evil) R 1 2 (x) S 77 4242 4242 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 3 0 69552 3133440 377 18446744073709551615 0 0\n';
  const s = parseStat(line);
  assert.ok(s);
  assert.equal(s.pid, 4242);
  assert.equal(s.comm, 'evil) R 1 2 (x');
  assert.equal(s.state, 'S');
  assert.equal(s.ppid, 77);
  assert.equal(s.numThreads, 3);
  assert.equal(s.startTime, 69552);
  assert.equal(parseStat('nonsense'), undefined);
  assert.equal(parseStat(''), undefined);
});

test('status: real and effective uid, the innermost NSpid', () => {
  const s = parseStatus('Name:\tbash\nUid:\t1000000\t1000000\t1000000\t1000000\nNSpid:\t31337\t42\n');
  assert.equal(s.uid, 1000000);
  assert.equal(s.euid, 1000000);
  assert.deepEqual(s.nsPid, [31337, 42]);
  assert.deepEqual(parseStatus('garbage\n'), {});
});

test('io: rchar/wchar and storage bytes; missing counters mean no io', () => {
  assert.deepEqual(parseIo('rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 0\n'), { rchar: 6976, wchar: 12, readBytes: 4096, writeBytes: 0 });
  assert.equal(parseIo('read_bytes: 1\n'), undefined);
});

test('cmdline: NUL split, trailing NUL, invalid UTF-8 replaced, limits cap args and lengths', () => {
  const bytes = Buffer.concat([Buffer.from('sh\0-c\0'), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from('\0\x1b[31mred\0')]);
  const r = splitCmdline(bytes);
  assert.deepEqual(r.argv, ['sh', '-c', '\ufffd\ufffdA', '\x1b[31mred']);
  assert.equal(r.truncated, false);
  const many = Buffer.from(Array.from({ length: 1000 }, (_, i) => `a${i}`).join('\0'));
  const capped = splitCmdline(many, { maxArgs: 10, maxArgChars: 2 });
  assert.equal(capped.argv.length, 10);
  assert.equal(capped.argv[5], 'a5');
  assert.equal(capped.truncated, true);
  const long = splitCmdline(Buffer.from('x'.repeat(100000)), { maxArgs: 4, maxArgChars: 100 });
  assert.equal(long.argv[0]?.length, 100);
  assert.equal(long.truncated, true);
  assert.deepEqual(splitCmdline(Buffer.alloc(0)).argv, []);
  // setproctitle-style: one string with spaces stays one argument.
  assert.deepEqual(splitCmdline(Buffer.from('npm install   \0')).argv, ['npm install   ']);
});

test('decodeText never throws and caps', () => {
  assert.equal(decodeText(Buffer.from([0xc3])), '\ufffd');
  assert.equal(decodeText(Buffer.from('abcdef'), 3), 'abc');
});

test('fd targets: kernel-formatted socket/pipe with inode; paths; a file cannot pose as a socket', () => {
  assert.deepEqual(parseFdTarget('socket:[123]'), { kind: 'socket', inode: 123 });
  assert.deepEqual(parseFdTarget('pipe:[9]'), { kind: 'pipe', inode: 9 });
  assert.deepEqual(parseFdTarget('/dev/pts/3'), { kind: 'tty' });
  assert.deepEqual(parseFdTarget('/work/socket:[123]'), { kind: 'file' });
  assert.deepEqual(parseFdTarget('anon_inode:[eventpoll]'), { kind: 'anon' });
  assert.deepEqual(parseFdTarget('socket:[123] '), { kind: 'other' });
  assert.equal(parseNsLink('net:[4026531840]'), '4026531840');
  assert.equal(parseNsLink('junk'), undefined);
  assert.deepEqual(stripDeleted('/tmp/x (deleted)'), { path: '/tmp/x', deleted: true });
});

test('ip helpers: CIDR membership for v4 and v6, RFC 5952 formatting, mapped addresses', () => {
  assert.ok(inCidr('10.1.2.3', '10.0.0.0/8'));
  assert.ok(!inCidr('11.1.2.3', '10.0.0.0/8'));
  assert.ok(inCidr('172.31.255.255', '172.16.0.0/12'));
  assert.ok(!inCidr('172.32.0.0', '172.16.0.0/12'));
  assert.ok(inCidr('::ffff:192.168.1.1', '192.168.0.0/16'));
  assert.ok(inCidr('fd12::1', 'fc00::/7'));
  assert.ok(!inCidr('10.0.0.1', 'fc00::/7'));
  assert.ok(isPrivate('100.64.0.2'));
  assert.ok(isMetadata('169.254.169.254'));
  assert.equal(parseCidr('10.0.0.0/33'), undefined);
  assert.equal(parseCidr('nonsense'), undefined);
  assert.equal(normalizeAddress('::ffff:1.2.3.4'), '1.2.3.4');
  const b = ipv6ToBytes('2001:db8:0:0:1:0:0:1');
  assert.ok(b);
  assert.equal(formatIPv6(b), '2001:db8::1:0:0:1');
  assert.equal(formatIPv6(ipv6ToBytes('::')!), '::');
  assert.equal(formatIPv6(ipv6ToBytes('::ffff:10.0.0.1')!), '::ffff:10.0.0.1');
  assert.equal(ipv6ToBytes('1::2::3'), undefined);
});
