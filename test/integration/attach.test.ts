/**
 * `coi attach` in a real terminal (a pty from util-linux's `script`) against the
 * real Incus: when its sandbox is deleted under it through the Incus API, it
 * ends promptly and says why, instead of hanging on a websocket Incus never closes.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { coi, deleteByPrefix, HELPER, requireIncus } from './support';

const PREFIX = `coi-ta${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-attach-');
chmodSync(root, 0o755);
const home = path.join(root, 'home');
const ws = path.join(root, 'project');
const env = { HOME: home, COI_CONTAINER_PREFIX: PREFIX };
let c: IncusClient;

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(ws, { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n');
});

after(async () => {
  await deleteByPrefix(c, PREFIX);
  rmSync(root, { recursive: true, force: true });
});

test('coi attach ends within seconds, with a message, when its sandbox is deleted under it', async () => {
  const started = await coi(['shell', '--background'], env, 180_000, ws);
  assert.equal(started.code, 0, started.stderr);
  const name = started.stdout.trim().split('\n').pop()!;
  assert.ok(name.startsWith(PREFIX), name);

  // attach needs a terminal: script gives it a pty (and exits with its status).
  const shellLine = [process.execPath, HELPER, 'attach', name].map((a) => `'${a}'`).join(' ');
  const child = spawn('script', ['-qfec', shellLine, '/dev/null'], { cwd: ws, env: { ...process.env, ...env, TERM: 'xterm' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number>((r) => child.on('close', (code, sig) => r(code ?? (sig ? 128 : -1))));
  try {
    // tmux's status line names the host, i.e. the sandbox: attached.
    const t0 = Date.now();
    while (!out.includes(`"${name}"`)) {
      if (Date.now() - t0 > 30_000) throw new Error(`coi attach never showed the tmux session:\n${out}`);
      if (child.exitCode !== null) throw new Error(`coi attach exited early (${child.exitCode}):\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    await c.deleteInstance(name, { force: true });
    const deletedAt = Date.now();
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 15_000))]);
    assert.notEqual(code, 'hung', `coi attach still runs 15 s after its sandbox was deleted:\n${out.slice(-500)}`);
    const seconds = (Date.now() - deletedAt) / 1000;
    assert.equal(code, 1, 'a session ended from outside is not a clean detach');
    // eslint-disable-next-line no-control-regex
    const text = out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    assert.match(text, new RegExp(`coi: ${name} was (deleted|stopped) while attached; the session is gone`));
    assert.ok(seconds < 10, `ended ${seconds.toFixed(1)} s after the delete`);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
