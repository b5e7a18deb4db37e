import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { coi, CoiResult, deleteByPrefix, requireIncus, sleep } from './support';

const PREFIX = `coi-s${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-sessions-');
const home = path.join(root, 'home');
let c: IncusClient;

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[defaults]\nforward_env = ["COI_SESSION_FWD"]\n');
});
after(async () => {
  await deleteByPrefix(c, PREFIX);
  rmSync(root, { recursive: true, force: true });
});

function coiIn(ws: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CoiResult> {
  return coi(args, { HOME: home, COI_CONTAINER_PREFIX: PREFIX, ...env }, 300_000, ws);
}

function workspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  return ws;
}

async function until(pred: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await pred()) return;
    await sleep(100);
  }
  assert.fail('condition not met in 10 s');
}

async function waitGone(name: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    if (!(await c.instanceExists(name))) return;
    await sleep(200);
  }
  assert.fail(`${name} still exists`);
}

test('~/SANDBOX_CONTEXT.md states the workspace, the network mode, persistence and forwarded names (not values)', async () => {
  const ws = workspace('context');
  const r = await coiIn(ws, ['shell', '--background'], { COI_SESSION_FWD: 'value-never-in-the-file' });
  assert.equal(r.code, 0, r.stderr);
  const name = r.stdout.trim();
  const md = (await c.exec(name, ['cat', '/home/code/SANDBOX_CONTEXT.md'])).stdout;
  assert.match(md, /Workspace: \/workspace/);
  assert.match(md, /Network: restricted/);
  assert.match(md, /ephemeral/);
  assert.match(md, /Forwarded environment variables: COI_SESSION_FWD\./);
  assert.doesNotMatch(md, /value-never-in-the-file/);
  const owner = (await c.exec(name, ['stat', '-c', '%U', '/home/code/SANDBOX_CONTEXT.md'])).stdout.trim();
  assert.equal(owner, 'code');
  await coiIn(ws, ['kill', name]);
});

test('powering off from inside still leaves a complete saved session, and --resume brings its state into a new container', async () => {
  const ws = workspace('resume');
  const other = workspace('resume-other');
  const a = await coiIn(ws, ['shell', '--background']);
  assert.equal(a.code, 0, a.stderr);
  const name = a.stdout.trim();
  const session = (await c.getInstance(name)).config['user.coi.session']!;
  // The agent's own state: the shell records this line in its history file.
  assert.equal((await coiIn(ws, ['tmux', 'send', name, 'echo state-from-session-a; history -a'])).code, 0);
  await until(async () => (await c.exec(name, ['cat', '/home/code/.bash_history'])).stdout.includes('state-from-session-a'));
  // Another workspace's session, newer: it must never be picked for this one.
  const b = await coiIn(other, ['shell', '--background']);
  assert.equal(b.code, 0, b.stderr);
  assert.equal((await coiIn(other, ['tmux', 'send', b.stdout.trim(), 'echo state-from-other; history -a'])).code, 0);
  await until(async () => (await c.exec(b.stdout.trim(), ['cat', '/home/code/.bash_history'])).stdout.includes('state-from-other'));

  await c.exec(name, ['sudo', '-n', 'poweroff']).catch(() => undefined);
  await waitGone(name);
  const saved = path.join(home, '.coi', 'sessions-shell', session);
  const meta = JSON.parse(readFileSync(path.join(saved, 'metadata.json'), 'utf8'));
  assert.equal(meta.session_id, session);
  assert.equal(meta.workspace, ws);
  assert.equal(meta.container_name, name);
  assert.equal(meta.state_saved, true, 'saved when the session ended, not only at launch');
  assert.match(readFileSync(path.join(saved, 'home', '.bash_history'), 'utf8'), /state-from-session-a/);

  await c.exec(b.stdout.trim(), ['sudo', '-n', 'poweroff']).catch(() => undefined);
  await waitGone(b.stdout.trim());
  const list = await coiIn(ws, ['list', '--all', '--format', 'json']);
  const sessions = JSON.parse(list.stdout).sessions as { session_id: string; workspace: string }[];
  assert.ok(sessions.some((s) => s.session_id === session && s.workspace === ws), 'coi list --all shows the saved session');

  const resumed = await coiIn(ws, ['shell', '--background', '--resume']);
  assert.equal(resumed.code, 0, resumed.stderr);
  const again = resumed.stdout.trim();
  assert.equal((await c.getInstance(again)).config['user.coi.session'], session, 'the resumed sandbox carries the same session');
  const restored = (await c.exec(again, ['cat', '/home/code/.bash_history'])).stdout;
  assert.match(restored, /state-from-session-a/);
  assert.doesNotMatch(restored, /state-from-other/, 'never another workspace\'s session');
  await coiIn(ws, ['kill', again]);

  const missing = await coiIn(workspace('never-ran'), ['shell', '--background', '--resume']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no saved shell session for/);
  assert.ok(existsSync(saved) && readdirSync(saved).includes('metadata.json'));
});
