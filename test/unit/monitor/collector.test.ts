/**
 * The collector against a /proc and a cgroup tree built in a temp dir: real
 * files, directories and symlinks (an fd link's target is just a string), so
 * every read path runs, including hostile content a container could produce.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { findContainerCgroup, listCgroupPids, ProcessCollector } from '../../../helper/guard/monitor/collector';
import { diffSnapshots, lineage, snapshotFromJson, snapshotToJson } from '../../../helper/guard/monitor/model';

const TCP_HDR = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
// 10.10.0.5:40000 -> 127.0.0.1:4444 ESTABLISHED inode 555; a listener inode 556.
const TCP_ROWS = '   0: 05000A0A:9C40 0100007F:115C 01 00000000:00000000 00:00000000 00000000  1000        0 555 1 0 20 4 30 10 -1\n   1: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 556 1 0 100 0 0 10 0\n';

interface FakeProc {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: Buffer | string;
  fds?: Record<number, string>;
  start?: number;
  threads?: Record<number, { rchar: number; wchar: number }>;
}

function writeProc(root: string, p: FakeProc): void {
  const d = path.join(root, String(p.pid));
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(path.join(d, 'fd'), { recursive: true });
  fs.mkdirSync(path.join(d, 'ns'), { recursive: true });
  fs.mkdirSync(path.join(d, 'net'), { recursive: true });
  const threads = p.threads ?? { [p.pid]: { rchar: 1000, wchar: 10 } };
  fs.writeFileSync(path.join(d, 'stat'), `${p.pid} (${p.comm}) S ${p.ppid} ${p.pid} ${p.pid} 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 ${Object.keys(threads).length} 0 ${p.start ?? 5000 + p.pid} 3133440 377\n`);
  fs.writeFileSync(path.join(d, 'cmdline'), p.cmdline);
  fs.writeFileSync(path.join(d, 'status'), `Name:\t${p.comm}\nUid:\t1000000\t1000000\t1000000\t1000000\nNSpid:\t${p.pid}\t${p.pid - 1000}\n`);
  // Whole-process counters include reaped children: large, and must NOT be used.
  fs.writeFileSync(path.join(d, 'io'), 'rchar: 999999999\nwchar: 999999999\nread_bytes: 0\nwrite_bytes: 0\n');
  for (const [tid, io] of Object.entries(threads)) {
    fs.mkdirSync(path.join(d, 'task', tid), { recursive: true });
    fs.writeFileSync(path.join(d, 'task', tid, 'io'), `rchar: ${io.rchar}\nwchar: ${io.wchar}\nsyscr: 1\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 0\n`);
  }
  fs.symlinkSync('/bin/sh', path.join(d, 'exe'));
  fs.symlinkSync('net:[4026532000]', path.join(d, 'ns', 'net'));
  for (const [fd, target] of Object.entries(p.fds ?? { 0: '/dev/pts/0', 1: '/dev/pts/0', 2: '/dev/pts/0' })) fs.symlinkSync(target, path.join(d, 'fd', fd));
  fs.writeFileSync(path.join(d, 'net', 'tcp'), TCP_HDR + TCP_ROWS);
  fs.writeFileSync(path.join(d, 'net', 'tcp6'), TCP_HDR);
  fs.writeFileSync(path.join(d, 'net', 'udp'), TCP_HDR);
  fs.writeFileSync(path.join(d, 'net', 'udp6'), TCP_HDR);
  fs.writeFileSync(path.join(d, 'net', 'dev'), 'Inter-|\n face |\n    lo: 500 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n');
}

const made: string[] = [];
after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

function fixture() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'coi-fakeproc-'));
  made.push(root);
  const proc = path.join(root, 'proc');
  const cg = path.join(root, 'cgroup');
  // v1 layout: pids controller, the container's group with nested groups below.
  const payload = path.join(cg, 'pids', 'lxc.payload.c1');
  fs.mkdirSync(path.join(payload, 'init.scope'), { recursive: true });
  fs.mkdirSync(path.join(payload, 'system.slice', 'agent.service'), { recursive: true });
  fs.writeFileSync(path.join(payload, 'cgroup.procs'), '');
  fs.writeFileSync(path.join(payload, 'init.scope', 'cgroup.procs'), '2001\n');
  fs.writeFileSync(path.join(payload, 'system.slice', 'cgroup.procs'), '');
  fs.writeFileSync(path.join(payload, 'system.slice', 'agent.service', 'cgroup.procs'), '2002\n2003\n2004\n2003\n');
  writeProc(proc, { pid: 2001, ppid: 1999, comm: 'systemd', cmdline: '/sbin/init\0' });
  writeProc(proc, { pid: 2002, ppid: 2001, comm: 'bash', cmdline: 'bash\0-c\0exec 3<>/dev/tcp/127.0.0.1/4444\0', fds: { 0: '/dev/pts/0', 1: '/dev/pts/0', 2: '/dev/pts/0', 3: 'socket:[555]', 4: 'socket:[9999]' } });
  // Hostile: comm with ") R", a 100 KB cmdline with invalid UTF-8 and escapes, a fd path that poses as a socket.
  const hostile = Buffer.concat([Buffer.from('\x1b[31m<img src=x onerror=alert(1)>\0'), Buffer.from([0xff, 0xfe, 0]), Buffer.alloc(100_000, 0x41)]);
  writeProc(proc, { pid: 2003, ppid: 2002, comm: 'x) R 1 (y', cmdline: hostile, fds: { 0: 'socket:[555]', 1: 'socket:[555]', 2: '/work/socket:[555]' }, threads: { 2003: { rchar: 100, wchar: 1 }, 2100: { rchar: 50, wchar: 2 } } });
  // 2004 is listed by the cgroup but has already exited: no /proc entry.
  return { root, proc, cg, payload };
}

test('cgroup discovery: v1 controller layout and pure v2 layout; nested groups walked, duplicates dropped', () => {
  const f = fixture();
  assert.equal(findContainerCgroup('c1', f.cg), f.payload);
  assert.equal(findContainerCgroup('nope', f.cg), undefined);
  assert.throws(() => findContainerCgroup('../../etc', f.cg));
  const v2 = path.join(f.root, 'v2');
  fs.mkdirSync(path.join(v2, 'lxc.payload.c2'), { recursive: true });
  fs.writeFileSync(path.join(v2, 'lxc.payload.c2', 'cgroup.procs'), '7\n');
  assert.equal(findContainerCgroup('c2', v2), path.join(v2, 'lxc.payload.c2'));
  assert.deepEqual(listCgroupPids([f.payload]).pids, [2001, 2002, 2003, 2004]);
  assert.equal(listCgroupPids([f.payload], { maxCgroupDirs: 2, maxCgroupDepth: 8 }).dirs, 2);
});

test('a snapshot from /proc: sockets resolved through the netns tables, lineage, own-thread I/O, hostile content capped and intact', () => {
  const f = fixture();
  const c = new ProcessCollector({ container: 'c1', procRoot: f.proc, cgroupRoot: f.cg, littleEndian: true, now: () => 1_740_000_000_000 });
  const s = c.collect();
  assert.equal(s.processCount, 4, 'the exited pid still counts as listed');
  assert.deepEqual([...s.processes.keys()], [2001, 2002, 2003]);
  const bash = s.processes.get(2002);
  assert.ok(bash);
  assert.deepEqual(bash.argv, ['bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/4444']);
  assert.equal(bash.exe, '/bin/sh');
  assert.equal(bash.uid, 1000000);
  assert.equal(bash.nsPid, 1002);
  assert.equal(bash.netns, '4026532000');
  assert.equal(bash.fdsComplete, true);
  assert.deepEqual(bash.fds.find((x) => x.fd === 3)?.socket, { proto: 'tcp', family: 4, local: { address: '10.10.0.5', port: 40000 }, remote: { address: '127.0.0.1', port: 4444 }, state: 'ESTABLISHED', inode: 555 });
  assert.equal(bash.fds.find((x) => x.fd === 4)?.socket, undefined, 'an inode in no table stays unresolved');
  const evil = s.processes.get(2003);
  assert.ok(evil);
  assert.equal(evil.comm, 'x) R 1 (y');
  assert.equal(evil.ppid, 2002);
  assert.equal(evil.argv[0], '\x1b[31m<img src=x onerror=alert(1)>');
  assert.equal(evil.argv[1], '\ufffd\ufffd');
  assert.equal(evil.argv[2]?.length, 4096);
  assert.equal(evil.argvTruncated, true);
  assert.deepEqual(evil.io, { readBytes: 150, writeBytes: 3, storageReadBytes: 8192, storageWriteBytes: 0 }, 'threads summed; the whole-process counter is not used');
  assert.equal(evil.fds.find((x) => x.fd === 2)?.kind, 'file', 'a path named like a socket is a file');
  assert.equal(evil.fds.find((x) => x.fd === 0)?.socket?.remote.port, 4444);
  assert.deepEqual(lineage(s, 2003).map((p) => p.pid), [2003, 2002, 2001]);
  assert.deepEqual(s.netdev, { rxBytes: 1000, txBytes: 2000 });
  assert.equal(s.connections.length, 2);
  // The JSON form round-trips (fixtures, forensics).
  const back = snapshotFromJson(JSON.parse(JSON.stringify(snapshotToJson(s))));
  assert.deepEqual(back.processes.get(2003), evil);
});

test('incremental polls: known processes re-read cheaply, exec and stdio changes are seen, pid reuse is a new process, gone ones leave', () => {
  const f = fixture();
  let t = 1_740_000_000_000;
  const c = new ProcessCollector({ container: 'c1', procRoot: f.proc, cgroupRoot: f.cg, fullScanEvery: 100, netRefreshEvery: 100, now: () => (t += 250) });
  const s1 = c.collect();
  assert.equal(c.stats.lastFullReads, 3);
  assert.equal(c.stats.lastNetTablesRead, 4);
  const s2 = c.collect();
  assert.equal(c.stats.lastFullReads, 0, 'nothing new: cheap fields only');
  assert.equal(c.stats.lastNetTablesRead, 0, 'no unknown socket: tables not re-read');
  assert.equal(s2.processes.get(2003)?.argv, s1.processes.get(2003)?.argv, 'unchanged argv is the same array (memoised matching)');

  // 2001 execs (comm and cmdline change); 2002 moves the socket onto its stdin; 2003 exits and its pid is reused.
  writeProc(f.proc, { pid: 2001, ppid: 1999, comm: 'sh', cmdline: 'sh\0-i\0' });
  fs.unlinkSync(path.join(f.proc, '2002', 'fd', '0'));
  fs.symlinkSync('socket:[555]', path.join(f.proc, '2002', 'fd', '0'));
  writeProc(f.proc, { pid: 2003, ppid: 2001, comm: 'sleep', cmdline: 'sleep\x0060\0', start: 99999 });
  // A new process with a socket nobody has seen forces a table read.
  writeProc(f.proc, { pid: 2004, ppid: 2001, comm: 'curl', cmdline: 'curl\0x\0', fds: { 0: '/dev/null', 1: '/dev/null', 2: '/dev/null', 5: 'socket:[777]' } });
  const s3 = c.collect();
  assert.deepEqual(s3.processes.get(2001)?.argv, ['sh', '-i']);
  assert.equal(s3.processes.get(2002)?.fds.find((x) => x.fd === 0)?.socket?.inode, 555);
  assert.deepEqual(s3.processes.get(2003)?.argv, ['sleep', '60']);
  assert.equal(c.stats.lastFullReads, 3, '2001 (exec), 2003 (reused pid), 2004 (new)');
  assert.equal(c.stats.lastNetTablesRead, 4, 'an unknown socket inode forces a re-read');
  const d = diffSnapshots(s2, s3);
  assert.deepEqual(d.added.map((p) => p.pid).sort(), [2003, 2004]);
  assert.deepEqual(d.gone.map((p) => p.pid), [2003]);
  assert.equal(d.elapsedMs > 0, true);

  const s4 = c.collect();
  assert.equal(c.stats.lastNetTablesRead, 0, 'the unresolvable inode is remembered, not re-read for every poll');
  fs.rmSync(path.join(f.proc, '2004'), { recursive: true });
  fs.writeFileSync(path.join(f.payload, 'system.slice', 'agent.service', 'cgroup.procs'), '2002\n2003\n');
  const s5 = c.collect();
  assert.deepEqual([...s5.processes.keys()], [2001, 2002, 2003]);
  assert.ok(s4.processes.has(2004));
});

test('an explicit pid source, unreadable entries and a missing cgroup', () => {
  const f = fixture();
  fs.writeFileSync(path.join(f.proc, '2002', 'stat'), 'garbage');
  const c = new ProcessCollector({ container: 'c1', procRoot: f.proc, pids: () => [2001, 2002, 2002, -5, 2003] });
  assert.deepEqual([...c.collect().processes.keys()], [2001, 2003]);
  const none = new ProcessCollector({ container: 'c9', procRoot: f.proc, cgroupRoot: f.cg });
  assert.throws(() => none.collect(), /has no cgroup/);
});
