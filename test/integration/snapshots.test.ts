/**
 * Snapshots against the real Incus and the real guard: checkpoint, change
 * things outside the workspace, roll back; branch into slot 2; automatic
 * checkpoints and their pruning; the JSON-RPC methods. Each test has its own
 * workspace; everything is deleted by prefix afterwards.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { IncusClient } from '../../helper/incus/client';
import { SnapshotBranch, SnapshotCreate, SnapshotDelete, SnapshotList, SnapshotRestore } from '../../helper/protocol/methods';
import { call } from '../../helper/protocol/rpc';
import { coi, CoiResult, HELPER, requireIncus, sleep } from './support';

const PREFIX = `coi-s${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-snap-');
chmodSync(root, 0o755);
const home = path.join(root, 'home');
let c: IncusClient;

function workspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  return ws;
}

const baseEnv = (): NodeJS.ProcessEnv => ({ HOME: home, COI_CONTAINER_PREFIX: PREFIX });

/** `coi` in a workspace, stdin closed unless given. */
const coiIn = (ws: string, args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CoiResult> => coi(args, { ...baseEnv(), ...env }, 180_000, ws, input);

async function ok(ws: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const r = await coiIn(ws, args, env);
  assert.equal(r.code, 0, `coi ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const asCode = (name: string, script: string) => c.exec(name, ['sh', '-c', script], { user: 1000, group: 1000, cwd: '/workspace' });
const readInside = async (name: string, file: string) => (await c.exec(name, ['sh', '-c', `cat ${file} 2>/dev/null || echo MISSING`])).stdout.trim();

async function snapshotsOf(ws: string, name: string): Promise<{ name: string; createdAt: string; auto: boolean }[]> {
  return JSON.parse(await ok(ws, ['snapshot', 'list', '-c', name, '--format', 'json'])).snapshots;
}

async function tmuxUp(name: string): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if ((await c.exec(name, ['tmux', 'has-session', '-t', `coi-${name}`], { user: 1000, group: 1000 })).exitCode === 0) return true;
    await sleep(100);
  }
  return false;
}

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n');
});

after(async () => {
  for (const i of await c.listInstances().catch(() => [])) {
    if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  }
  rmSync(root, { recursive: true, force: true });
});

describe('coi snapshot', () => {
  test('create → change files outside the workspace → restore brings them back; workspace files are untouched; the session restarts', async () => {
    const ws = workspace('restore');
    const name = (await ok(ws, ['shell', '--background'])).trim();
    await asCode(name, 'echo before > /home/code/state.txt; echo ws-before > /workspace/ws.txt');
    const labelsBefore = (await c.getInstance(name)).config;

    // The only sandbox of this workspace: no -c needed; the default name is snap-YYYYMMDD-HHMMSS.
    const created = await ok(ws, ['snapshot', 'create']);
    const snap = /snapshot (snap-\d{8}-\d{6}) taken/.exec(created)?.[1];
    assert.ok(snap, created);
    await ok(ws, ['snapshot', 'create', 'checkpoint']);

    await asCode(name, 'echo after > /home/code/state.txt; echo new > /home/code/new.txt; echo ws-after > /workspace/ws.txt; echo ws-new > /workspace/ws-new.txt');
    await c.exec(name, ['sh', '-c', 'echo installed > /usr/local/bin/agent-tool']);

    // Without -f it asks; no answer is a no, and nothing changes.
    const refused = await coiIn(ws, ['snapshot', 'restore', 'checkpoint']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /This is lost:\n {2}- every change made in .* outside \/workspace since checkpoint/);
    assert.match(refused.stderr, /This is kept:\n {2}- the workspace .*: its files live on the host .* a restore never touches them/);
    assert.match(refused.stderr, /is running: it will be stopped, restored and started again/);
    assert.match(refused.stderr, /not restored \(answer y, or pass -f\)/);
    assert.equal(await readInside(name, '/home/code/state.txt'), 'after');

    // An answer of y on stdin goes ahead.
    const r = await coiIn(ws, ['snapshot', 'restore', 'checkpoint'], {}, 'y\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored to checkpoint and started again with its tool/);

    assert.equal(await readInside(name, '/home/code/state.txt'), 'before', 'the file outside the workspace is back');
    assert.equal(await readInside(name, '/home/code/new.txt'), 'MISSING', 'what was made after the snapshot is gone');
    assert.equal(await readInside(name, '/usr/local/bin/agent-tool'), 'MISSING');
    assert.equal(readFileSync(path.join(ws, 'ws.txt'), 'utf8'), 'ws-after\n', 'workspace files are not rolled back');
    assert.equal(readFileSync(path.join(ws, 'ws-new.txt'), 'utf8'), 'ws-new\n');
    assert.equal(await readInside(name, '/workspace/ws-new.txt'), 'ws-new', 'and the sandbox still sees them');

    const after = await c.getInstance(name);
    assert.equal(after.status, 'Running');
    assert.equal(after.config['user.coi.hold'], undefined, 'the hold is released');
    for (const k of ['user.coi.session', 'user.coi.phase', 'user.coi.persistent', 'user.coi.slot', 'user.coi.workspace']) assert.equal(after.config[k], labelsBefore[k], `${k} is the sandbox's, not the snapshot's`);
    assert.ok(await tmuxUp(name), 'the tool runs again in tmux');
    const list = await snapshotsOf(ws, name);
    assert.deepEqual(list.map((s) => s.name), [snap, 'checkpoint'], 'restoring keeps every snapshot');

    // -f restores without asking, to an older snapshot, with newer ones kept.
    const forced = await coiIn(ws, ['snapshot', 'restore', snap!, '-f']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stderr, /the snapshots taken after snap-\d{8}-\d{6} \(checkpoint\)/);
    await ok(ws, ['kill', name]);
  });

  test('restore of a stopped persistent sandbox leaves it stopped; a frozen one is refused with the reason', async () => {
    const ws = workspace('stopped');
    const name = (await ok(ws, ['shell', '--background', '--persistent'])).trim();
    await asCode(name, 'echo one > /home/code/f');
    await ok(ws, ['snapshot', 'create', 'one']);
    await asCode(name, 'echo two > /home/code/f');
    await ok(ws, ['shutdown', name]);
    const r = await coiIn(ws, ['snapshot', 'restore', 'one', '-f']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /restored to one; it is stopped \(coi shell restarts it\)/);
    assert.equal((await c.getState(name)).status, 'Stopped');
    assert.equal((await ok(ws, ['shell', '--background', '--persistent'])).trim(), name);
    assert.equal(await readInside(name, '/home/code/f'), 'one');

    await c.setState(name, 'freeze');
    const frozen = await coiIn(ws, ['snapshot', 'restore', 'one', '-f']);
    assert.equal(frozen.code, 1);
    assert.match(frozen.stderr, /not restoring .*: .* is frozen by the guard after an alert/);
    assert.match(frozen.stderr, /fix: .*coi resume /);
    await c.setState(name, 'unfreeze');
    await ok(ws, ['kill', name]);
  });

  test('branch gives slot 2 with the snapshot\'s state, through the normal launch path', async () => {
    const ws = workspace('branch');
    const first = (await ok(ws, ['shell', '--background'])).trim();
    assert.match(first, /-1$/);
    await asCode(first, 'echo experiment-base > /home/code/state.txt');
    await ok(ws, ['snapshot', 'create', 'base']);
    await asCode(first, 'echo slot-1-moved-on > /home/code/state.txt');

    const out = await coiIn(ws, ['snapshot', 'branch', 'base', '--background', '--format', 'json']);
    assert.equal(out.code, 0, out.stderr);
    const sb = JSON.parse(out.stdout) as { name: string; slot: number; state: string; workspace: string; phase: string; tool: string };
    assert.equal(sb.slot, 2);
    assert.equal(sb.name, first.replace(/-1$/, '-2'));
    assert.deepEqual([sb.state, sb.phase, sb.workspace, sb.tool], ['running', 'ready', ws, 'shell']);
    assert.equal(await readInside(sb.name, '/home/code/state.txt'), 'experiment-base', 'the branch starts from the snapshot');
    assert.equal(await readInside(first, '/home/code/state.txt'), 'slot-1-moved-on', 'slot 1 is untouched');
    assert.ok(await tmuxUp(sb.name), 'the tool started in the branch');
    const inst = await c.getInstance(sb.name);
    assert.equal(inst.config['user.coi.slot'], '2');
    assert.notEqual(inst.config['user.coi.session'], (await c.getInstance(first)).config['user.coi.session']);
    assert.notEqual(inst.devices.eth0?.host_name, (await c.getInstance(first)).devices.eth0?.host_name, 'its own host interface');

    // Two sandboxes now: commands must be told which one.
    const ambiguous = await coiIn(ws, ['snapshot', 'list']);
    assert.equal(ambiguous.code, 2);
    assert.match(ambiguous.stderr, /this workspace has 2 sandboxes: .*-1 .*-2 .*choose one with -c NAME/);
    assert.deepEqual((await snapshotsOf(ws, sb.name)).map((s) => s.name), [], 'a branch starts without snapshots');
    const viaEnv = await coiIn(ws, ['snapshot', 'list', '--format', 'json'], { COI_CONTAINER: first });
    assert.deepEqual(JSON.parse(viaEnv.stdout).snapshots.map((s: { name: string }) => s.name), ['base']);
    for (const n of [first, sb.name]) await ok(ws, ['kill', n]);
  });

  test('[snapshots] auto takes a checkpoint at each session start and keeps the last N; user snapshots are never pruned', async () => {
    const ws = workspace('auto');
    mkdirSync(path.join(ws, '.coi'));
    const autoHome = path.join(root, 'home-auto');
    mkdirSync(path.join(autoHome, '.coi'), { recursive: true });
    writeFileSync(path.join(autoHome, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\npersistent = true\nshutdown_timeout = 5\n\n[tool]\nname = "shell"\n\n[snapshots]\nauto = true\nkeep = 2\n');
    const env = { HOME: autoHome };
    const start = async () => {
      const r = await coiIn(ws, ['shell', '--background'], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /checkpoint auto-\d{8}-\d{6}(-\d+)? of .* taken/);
      return r.stdout.trim();
    };
    const name = await start();
    await asCode(name, 'echo session-1 > /home/code/progress');
    await ok(ws, ['snapshot', 'create', 'mine', '-c', name], env);
    await ok(ws, ['shutdown', name], env);
    assert.equal(await start(), name, 'the persistent sandbox is restarted');
    await ok(ws, ['shutdown', name], env);
    assert.equal(await start(), name);
    const snaps = await snapshotsOf(ws, name);
    const autos = snaps.filter((s) => s.auto);
    assert.equal(autos.length, 2, `kept the last 2: ${JSON.stringify(snaps)}`);
    assert.ok(snaps.some((s) => s.name === 'mine'), 'the user snapshot stays');
    assert.ok(Date.parse(autos[0]!.createdAt) > Date.parse(snaps.find((s) => s.name === 'mine')!.createdAt), 'the first checkpoint (older than mine) was pruned');
    // The newest checkpoint is the state at the start of this session: the way back to before the agent's run.
    await asCode(name, 'echo agent-broke-it > /home/code/progress');
    await ok(ws, ['snapshot', 'restore', autos.at(-1)!.name, '-f', '-c', name], env);
    assert.equal(await readInside(name, '/home/code/progress'), 'session-1');
    await ok(ws, ['kill', name], env);
  });

  test('info, delete and delete --all; names Incus would refuse and unknown sandboxes are errors that say what to do', async () => {
    const ws = workspace('manage');
    const name = (await ok(ws, ['shell', '--background'])).trim();
    await ok(ws, ['snapshot', 'create', 'a']);
    await ok(ws, ['snapshot', 'create', 'b']);
    const info = JSON.parse(await ok(ws, ['snapshot', 'info', 'a', '--format', 'json'])).snapshot;
    assert.deepEqual([info.sandbox, info.name, info.stateful, info.auto], [name, 'a', false, false]);
    assert.match(await ok(ws, ['snapshot', 'info', 'a']), /^snapshot: {2}a\nsandbox: {3}.*\ncreated: {3}\d{4}-/);
    const dup = await coiIn(ws, ['snapshot', 'create', 'a']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /already has a snapshot "a"/);
    const bad = await coiIn(ws, ['snapshot', 'create', 'auto-x']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /reserved for automatic checkpoints/);
    const missing = await coiIn(ws, ['snapshot', 'info', 'zzz']);
    assert.match(missing.stderr, /has no snapshot "zzz"\n {2}fix: List its snapshots: coi snapshot list -c /);
    const notOurs = await coiIn(ws, ['snapshot', 'list', '-c', `${PREFIX}nothing-1`]);
    assert.match(notOurs.stderr, /no sandbox named/);

    const noAnswer = await coiIn(ws, ['snapshot', 'delete', 'a']);
    assert.equal(noAnswer.code, 1);
    assert.deepEqual((await snapshotsOf(ws, name)).map((s) => s.name), ['a', 'b']);
    assert.match(await ok(ws, ['snapshot', 'delete', 'a', '-f']), /deleted snapshot a/);
    const all = await ok(ws, ['snapshot', 'list', '--all', '--format', 'json']);
    assert.deepEqual(JSON.parse(all).snapshots.filter((s: { sandbox: string }) => s.sandbox === name).map((s: { name: string }) => s.name), ['b']);
    assert.match(await ok(ws, ['snapshot', 'delete', '--all', '-f']), /deleted snapshot b/);
    assert.deepEqual(await snapshotsOf(ws, name), []);

    // Outside any workspace with a sandbox: the error lists the sandboxes to choose from.
    const elsewhere = await coiIn(workspace('empty'), ['snapshot', 'list']);
    assert.equal(elsewhere.code, 2);
    assert.match(elsewhere.stderr, new RegExp(`no sandbox for .*empty; choose a sandbox with -c NAME .*${name}`));
    await ok(ws, ['kill', name]);
  });
});

describe('snapshot/* over JSON-RPC', () => {
  test('create, list, restore (plan first, then for real), branch and delete', async () => {
    const ws = workspace('rpc');
    const name = (await ok(ws, ['shell', '--background'])).trim();
    await asCode(name, 'echo rpc-before > /home/code/f');
    const child = spawn(process.execPath, [HELPER, '--stdio'], { env: { ...process.env, ...baseEnv() }, stdio: ['pipe', 'pipe', 'inherit'] });
    const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    conn.listen();
    try {
      const { snapshot } = await call(conn, SnapshotCreate, { name, snapshot: 'rpc' });
      assert.equal(snapshot.name, 'rpc');
      assert.deepEqual((await call(conn, SnapshotList, { name })).snapshots.map((s) => [s.name, s.stateful]), [['rpc', false]]);
      await asCode(name, 'echo rpc-after > /home/code/f');
      const dry = await call(conn, SnapshotRestore, { name, snapshot: 'rpc', dryRun: true });
      assert.deepEqual([dry.restored, dry.plan.restart, dry.plan.refused], [false, true, undefined]);
      assert.match(dry.plan.kept[0]!, /a restore never touches them/);
      assert.equal(await readInside(name, '/home/code/f'), 'rpc-after', 'a dry run changes nothing');
      const done = await call(conn, SnapshotRestore, { name, snapshot: 'rpc', dryRun: false });
      assert.deepEqual([done.restored, done.restarted, done.sandbox.state], [true, true, 'running']);
      assert.equal(await readInside(name, '/home/code/f'), 'rpc-before');
      const br = await call(conn, SnapshotBranch, { name, snapshot: 'rpc' });
      assert.equal(br.sandbox.slot, 2);
      assert.equal(await readInside(br.sandbox.name, '/home/code/f'), 'rpc-before');
      await assert.rejects(call(conn, SnapshotDelete, { name, all: false } as never), /either snapshot or all/);
      assert.deepEqual(await call(conn, SnapshotDelete, { name, snapshot: 'rpc', all: false }), { deleted: ['rpc'] });
      for (const n of [name, br.sandbox.name]) await c.deleteInstance(n, { force: true });
    } finally {
      conn.dispose();
      child.kill();
    }
  });
});
