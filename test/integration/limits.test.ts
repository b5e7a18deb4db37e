import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { coi, CoiResult, deleteByPrefix, requireIncus, sleep } from './support';

const PREFIX = `coi-l${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-limits-');
let c: IncusClient;

before(async () => {
  c = await requireIncus();
});
after(async () => {
  await deleteByPrefix(c, PREFIX);
  rmSync(root, { recursive: true, force: true });
});

/** A workspace and a HOME whose user config holds the given TOML. */
function world(name: string, toml: string): { ws: string; env: NodeJS.ProcessEnv } {
  const home = path.join(root, name, 'home');
  const ws = path.join(root, name, 'ws');
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(ws, { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n${toml}`);
  return { ws, env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX } };
}

function coiIn(w: { ws: string; env: NodeJS.ProcessEnv }, args: string[]): Promise<CoiResult> {
  return coi(args, w.env, 300_000, w.ws);
}

test('limits.memory = "128MiB": a memory hog inside is OOM-killed, the sandbox survives', async () => {
  const w = world('memory', '[limits.memory]\nlimit = "128MiB"\n');
  // tail keeps everything it reads from a stream without newlines in memory.
  const r = await coiIn(w, ['run', 'head -c 400M /dev/zero | tail > /dev/null; echo "hog exited $?"; echo still-here']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hog exited 137\nstill-here\n', 'SIGKILL by the OOM killer, and the shell goes on');
});

test('limits.runtime.max_processes = 50: a fork loop is stopped at the limit', async () => {
  const w = world('procs', '[limits.runtime]\nmax_processes = 50\n');
  const r = await coiIn(w, ['shell', '--background']);
  assert.equal(r.code, 0, r.stderr);
  const name = r.stdout.trim();
  const loop = await c.exec(name, ['sh', '-c', 'i=0; while [ $i -lt 200 ]; do sleep 15 & i=$((i+1)); done; echo "all 200 started"'], { user: 1000, group: 1000, timeoutMs: 60_000 });
  assert.notEqual(loop.exitCode, 0, 'the loop was stopped');
  assert.match(loop.stderr, /Cannot fork|Resource temporarily unavailable/);
  assert.doesNotMatch(loop.stdout, /all 200 started/);
  // The kernel's own account, read from the host: the cap held and forks were refused.
  const cg = [`/sys/fs/cgroup/pids/lxc.payload.${name}`, `/sys/fs/cgroup/lxc.payload.${name}`].find((d) => existsSync(`${d}/pids.max`));
  assert.ok(cg, 'the sandbox has a pids cgroup (v1 or v2)');
  const max = readFileSync(`${cg}/pids.max`, 'utf8').trim();
  const current = Number(readFileSync(`${cg}/pids.current`, 'utf8').trim());
  const refused = Number(/^max (\d+)$/m.exec(readFileSync(`${cg}/pids.events`, 'utf8'))?.[1]);
  assert.equal(max, '50');
  assert.ok(current <= 50, `pids.current ${current} <= 50`);
  assert.ok(refused > 0, `the kernel refused forks (pids.events max ${refused})`);
  await c.deleteInstance(name, { force: true });
});

test('max_duration = "20s" stops the sandbox soon after 20 s, with no coi process running', async () => {
  const w = world('duration', '[limits.runtime]\nmax_duration = "20s"\n');
  const started = Date.now();
  const r = await coiIn(w, ['shell', '--background']);
  assert.equal(r.code, 0, r.stderr);
  const name = r.stdout.trim();
  // The coi that launched it has exited; only the guard is left to enforce the limit.
  await sleep(Math.max(0, 12_000 - (Date.now() - started)));
  assert.equal((await c.getInstance(name)).status, 'Running', 'still running well before its 20 s');
  let endedAt = 0;
  while (Date.now() - started < 60_000) {
    const inst = await c.getInstance(name).catch(() => undefined);
    if (!inst || inst.status === 'Stopped') {
      endedAt = Date.now();
      break;
    }
    await sleep(250);
  }
  assert.ok(endedAt > 0, `${name} was still running 60 s after launch`);
  const after = (endedAt - started) / 1000;
  assert.ok(after >= 19, `not before its time (${after.toFixed(1)} s)`);
  console.log(`# ${name} ended ${after.toFixed(1)} s after the launch began (max_duration 20 s)`);
});
