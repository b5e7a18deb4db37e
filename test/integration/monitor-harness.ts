/**
 * What the monitor suites share: a guard of their own (private socket, network
 * scope and monitor prefix, so the host's guard keeps everything else), its
 * threat pushes, launches with monitoring on, typing into the agent's pane,
 * and the owner's audit log. Each suite makes one with its own tag.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { GuardClient } from '../../helper/guard/client';
import { tablesFor } from '../../helper/guard/network/names';
import { nftExec, removeAllRules } from '../../helper/guard/network/nft';
import { auditLocation } from '../../helper/guard/monitor/audit-location';
import type { IncusClient } from '../../helper/incus/client';
import type { GuardEvent, ThreatEventWire, ThreatRecord } from '../../helper/protocol/methods';
import { tmuxSession } from '../../helper/sandbox/naming';
import { coi, CoiResult, HELPER, sleep } from './support';

export interface MonitorHarness {
  readonly prefix: string;
  readonly root: string;
  readonly guardLog: string;
  /** What a `coi` of this suite needs to talk to its guard. */
  readonly guardEnv: { COI_GUARD_SOCKET: string; COI_GUARD_SCOPE: string };
  /** Every threat the guard pushed since connect(). */
  readonly threats: ThreatEventWire[];
  /** Starts (or, after a kill, starts again) the suite's guard. */
  startGuard(): ChildProcess;
  /** Starts the guard and subscribes to its threats. */
  connect(): Promise<void>;
  /** `coi shell --background` with this suite's guard; once more when tmux lost its session under load. */
  launch(ws: string, home: string): Promise<string>;
  /** Types a command into the agent's tmux pane, as the agent's own shell would run it. */
  type(c: IncusClient, name: string, text: string): Promise<void>;
  waitFor<T>(what: string, f: () => T | undefined | Promise<T | undefined>, timeoutMs?: number, everyMs?: number): Promise<T>;
  threatsOf(name: string): ThreatRecord[];
  /** The owner's audit log of a sandbox; `bad` counts lines that are not JSON (a torn write). */
  auditLines(name: string): { records: ThreatRecord[]; bad: number };
  /** Stops the guard (so it removes its trace instances), deletes the suite's sandboxes, keeps the guard log and audit files in `keep`. */
  close(c: IncusClient | undefined, keep: string): Promise<void>;
  guard(): ChildProcess | undefined;
}

export function monitorHarness(tag: string): MonitorHarness {
  const prefix = `coi-${tag}${randomBytes(2).toString('hex')}-`;
  const root = mkdtempSync(`/tmp/coi-${tag}-it-`);
  // Workspaces live here: the sandbox's user must be able to reach them.
  chmodSync(root, 0o755);
  const socketPath = path.join(root, 'guard.sock');
  const scope = `${tag}${randomBytes(3).toString('hex')}`;
  const guardLog = path.join(root, 'guard.log');
  const threats: ThreatEventWire[] = [];
  let guard: ChildProcess | undefined;
  let client: GuardClient | undefined;

  const tail = (n: number): string => {
    try {
      return readFileSync(guardLog, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  };
  const auditFile = (name: string) => path.join(auditLocation(0).dir, `${name}.jsonl`);

  const h: MonitorHarness = {
    prefix,
    root,
    guardLog,
    guardEnv: { COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: scope },
    threats,
    guard: () => guard,
    startGuard() {
      const fd = openSync(guardLog, 'a');
      guard = spawn(process.execPath, [HELPER, 'guard', 'run'], {
        env: { ...process.env, COI_GUARD_SOCKET: socketPath, COI_GUARD_SCOPE: scope, COI_NET_STATE_DIR: path.join(root, 'net'), COI_NET_CACHE_DIR: path.join(root, 'net-cache'), COI_GUARD_MONITOR_PREFIX: prefix, COI_LOG_LEVEL: 'debug' },
        stdio: ['ignore', fd, fd],
      });
      return guard;
    },
    async connect() {
      h.startGuard();
      client = new GuardClient({ socketPath, reconnect: true });
      client.on('event', (e: GuardEvent) => {
        if (e.topic === 'threat') threats.push(e.event);
      });
      await client.subscribe(['threat']);
      client.connect({ timeoutMs: 1_000 }).catch(() => undefined);
      await client.waitConnected(20_000);
    },
    async launch(ws, home) {
      mkdirSync(ws, { recursive: true });
      let last: CoiResult | undefined;
      for (let attempt = 1; attempt <= 2; attempt++) {
        last = await coi(['shell', '--background', '--workspace', ws], { HOME: home, COI_CONTAINER_PREFIX: prefix, ...h.guardEnv }, 180_000);
        if (last.code === 0) return last.stdout.trim();
        // Under heavy load a launch sometimes loses its tmux session (not the monitor's doing): once more.
        if (!/tmux session .* ended at once/.test(last.stderr)) break;
      }
      throw new Error(`coi shell failed: ${last?.stderr}`);
    },
    async type(c, name, text) {
      const env = { HOME: '/home/code', USER: 'code' };
      for (const keys of [['-l', text], ['Enter']]) {
        const r = await c.exec(name, ['tmux', 'send-keys', '-t', tmuxSession(name), ...keys], { user: 1000, group: 1000, env });
        assert.equal(r.exitCode, 0, r.stderr);
      }
    },
    async waitFor(what, f, timeoutMs = 20_000, everyMs = 50) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = await f();
        if (v !== undefined) return v;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n--- guard log (tail) ---\n${tail(30)}`);
        await sleep(everyMs);
      }
    },
    threatsOf: (name) => threats.filter((t) => t.container === name).map((t) => t.record),
    auditLines(name) {
      const text = existsSync(auditFile(name)) ? readFileSync(auditFile(name), 'utf8') : '';
      let bad = 0;
      const records: ThreatRecord[] = [];
      for (const l of text.split('\n')) {
        if (!l.trim()) continue;
        try {
          records.push(JSON.parse(l) as ThreatRecord);
        } catch {
          bad++;
        }
      }
      return { records, bad };
    },
    async close(c, keep) {
      client?.close();
      if (guard && guard.exitCode === null && guard.signalCode === null) {
        const g = guard;
        const exited = new Promise<void>((r) => g.once('exit', () => r()));
        g.kill('SIGTERM');
        await Promise.race([exited, sleep(5_000)]);
        g.kill('SIGKILL');
      }
      for (const i of (await c?.listInstances().catch(() => [])) ?? []) {
        if (i.name.startsWith(prefix)) await c!.deleteInstance(i.name, { force: true }).catch(() => undefined);
      }
      // The guard's tables outlive it by design; with its sandboxes gone, this scope's are ours to remove.
      await removeAllRules(nftExec(), tablesFor(scope)).catch(() => undefined);
      rmSync(keep, { recursive: true, force: true });
      mkdirSync(keep, { recursive: true });
      if (existsSync(guardLog)) writeFileSync(path.join(keep, 'guard.log'), readFileSync(guardLog));
      const dir = auditLocation(0).dir;
      for (const f of existsSync(dir) ? readdirSync(dir) : []) {
        if (!f.startsWith(prefix)) continue;
        writeFileSync(path.join(keep, f), readFileSync(path.join(dir, f)));
        rmSync(path.join(dir, f), { force: true });
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
  return h;
}
