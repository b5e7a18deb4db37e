/**
 * `coi build` against the real Incus, offline (no image server here; the
 * sandbox bridge is a dead end): the default image with the real agents, a
 * custom image from a script, and interrupted builds that leave nothing.
 *
 * The first run builds `coi` (minutes; CI builds it before the tests, so
 * there it is a cache hit). Sandboxes get a prefix of their own; custom images
 * a name of their own; both are removed after.
 */
import { strict as assert } from 'node:assert';
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { IncusClient } from '../../helper/incus/client';
import { BUILD_LABELS } from '../../helper/images/builder';
import { BuildCancel, BuildFinished, BuildProgress, BuildStart, ImageDelete, ImageList } from '../../helper/protocol/methods';
import { call, onNotify } from '../../helper/protocol/rpc';
import { coi, CoiResult, HELPER, REPO, requireIncus, sleep } from './support';

const tag = randomBytes(3).toString('hex');
const PREFIX = `coi-ti${tag.slice(0, 4)}-`;
const CUSTOM = `coi-it-img-${tag}`;
const FIXTURES = path.join(REPO, 'test', 'fixtures', 'images');
const CACHE = process.env.COI_CACHE_DIR || '/var/cache/coi';
const root = mkdtempSync('/tmp/coi-images-');
chmodSync(root, 0o755);
const home = path.join(root, 'home');
let c: IncusClient;

function workspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  return ws;
}

const env = (extra: NodeJS.ProcessEnv = {}) => ({ HOME: home, COI_CONTAINER_PREFIX: PREFIX, ...extra });

/** `coi` in a workspace (its cwd), with the suite's HOME and prefix. */
const coiIn = (ws: string, args: string[], timeoutMs = 300_000): Promise<CoiResult> => coi(args, env(), timeoutMs, ws);

/** Starts `coi` and resolves once its stderr matches, handing back the child and what it printed. */
function startUntil(args: string[], pattern: RegExp, timeoutMs = 600_000): Promise<{ child: ChildProcess; stderr: () => string; exited: Promise<number> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HELPER, ...args], { cwd: root, env: { ...process.env, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let done = false;
    const exited = new Promise<number>((r) => child.on('close', (code, sig) => r(code ?? (sig ? 128 : -1))));
    const t = setTimeout(() => {
      if (!done) {
        child.kill('SIGKILL');
        reject(new Error(`coi ${args.join(' ')}: no ${pattern} within ${timeoutMs} ms\n${err}`));
      }
    }, timeoutMs);
    child.stderr.on('data', (d: Buffer) => {
      err += d;
      if (!done && pattern.test(err)) {
        done = true;
        clearTimeout(t);
        resolve({ child, stderr: () => err, exited });
      }
    });
    child.stdout.resume();
    void exited.then((code) => {
      if (!done) {
        done = true;
        clearTimeout(t);
        reject(new Error(`coi ${args.join(' ')} exited with ${code} before ${pattern}\n${err}`));
      }
    });
  });
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function aliasesOf(name: string): Promise<string[]> {
  return (await c.listImageAliases()).map((a) => a.name).filter((a) => a === name || a.startsWith(`${name}-`));
}

async function buildContainers(): Promise<string[]> {
  return (await c.listInstances()).filter((i) => i.config?.[BUILD_LABELS.build] !== undefined && i.config?.[BUILD_LABELS.name]?.startsWith(CUSTOM)).map((i) => i.name);
}

let built: { name: string; fingerprint: string; outcome: string; tools: Record<string, string>; seconds: number };

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  // The build: offline, as CI does it (a cache hit there, minutes on a fresh machine).
  const r = await coi(['build', '--offline', '--format', 'json', '--quiet'], env(), 40 * 60_000);
  assert.equal(r.code, 0, `coi build failed:\n${r.stderr}`);
  built = JSON.parse(r.stdout);
});

after(async () => {
  for (const i of await c.listInstances().catch(() => [])) {
    if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  }
  for (const n of [CUSTOM, `${CUSTOM}-k`, `${CUSTOM}-r`]) await coi(['image', 'delete', n], env()).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('coi build (the default image, offline)', () => {
  test('builds coi with tmux, git, sudo, node and the real claude and opencode, recorded as image properties', async () => {
    assert.equal(built.name, 'coi');
    for (const t of ['tmux', 'git', 'sudo', 'node', 'npm', 'claude', 'opencode']) assert.match(built.tools[t] ?? '', /^\d+\.\d+/, `${t} in ${JSON.stringify(built.tools)}`);
    const info = await coi(['image', 'info', 'coi', '--format', 'json'], env());
    assert.equal(info.code, 0, info.stderr);
    const image = JSON.parse(info.stdout);
    assert.equal(image.fingerprint, built.fingerprint);
    assert.equal(image.kind, 'default');
    assert.equal(image.tools.claude, built.tools.claude);
    assert.match(image.properties['coi.agents.claude'], /^@anthropic-ai\/claude-code@\d+\.\d+\.\d+/);
    assert.match(image.properties['coi.agents.opencode'], /^opencode-ai@\d+\.\d+\.\d+/);
    assert.ok(image.aliases.some((a: string) => /^coi-\d{8}-\d{6}(-\d+)?$/.test(a)), `a version alias among ${image.aliases}`);
    const list = await coi(['image', 'list', '--format', 'json'], env());
    assert.ok(JSON.parse(list.stdout).images.some((i: { aliases: string[] }) => i.aliases.includes('coi')));
  });

  test('inside, as code: the tools run, sudo needs no password, tmux.conf and /etc/coi/image.json are there', async () => {
    const ws = workspace('inside');
    const script = [
      'set -e',
      'id -un; id -u',
      'sudo -n true && echo sudo-ok',
      'test -f /etc/tmux.conf && echo tmux-conf-ok',
      'tmux -V; git --version; node --version; npm --version',
      'claude --version',
      'opencode --version',
      'for c in poweroff shutdown halt reboot; do command -v $c; done',
      'cat /etc/coi/image.json',
    ].join('\n');
    const r = await coiIn(ws, ['run', '--image', 'coi', '--', 'bash', '-c', script]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const out = r.stdout;
    assert.match(out, /^code\n1000\n/);
    assert.match(out, /sudo-ok/);
    assert.match(out, /tmux-conf-ok/);
    assert.match(out, /tmux \d/);
    assert.match(out, /\(Claude Code\)/);
    assert.ok(out.includes(built.tools.opencode!), 'opencode --version');
    assert.match(out, /\/usr\/local\/bin\/poweroff\n\/usr\/local\/bin\/shutdown\n\/usr\/local\/bin\/halt\n\/usr\/local\/bin\/reboot/);
    const manifest = JSON.parse(out.slice(out.indexOf('{')));
    assert.equal(manifest.name, 'coi');
    assert.equal(manifest.tools.claude, built.tools.claude);
  });

  test('a second build is up to date within seconds, without the registry', async () => {
    const t0 = Date.now();
    // A registry that does not exist: an up-to-date build must not need it.
    const r = await coi(['build', '--offline', '--format', 'json', '--quiet'], env({ npm_config_registry: 'http://127.0.0.1:9/' }), 120_000);
    assert.equal(r.code, 0, r.stderr);
    const again = JSON.parse(r.stdout);
    assert.equal(again.outcome, 'up-to-date');
    assert.equal(again.fingerprint, built.fingerprint);
    assert.ok(Date.now() - t0 < 30_000, `took ${Date.now() - t0} ms`);
  });

  test('coi shell --tool claude starts the real Claude Code: its own first screen, as code in /workspace', async () => {
    const ws = workspace('claude');
    // No internet in here; the image marks Claude Code's first-run wizard done and bypass mode pre-accepts
    // /workspace's trust, so it shows its banner with the workspace and waits at its prompt.
    const { name, screen } = await toolScreen(ws, 'claude', /Claude Code v\d/, 60_000);
    assert.doesNotMatch(screen, /command not found|No such file|not installed/);
    assert.match(screen, /Claude Code v\d+\.\d+[\s\S]*\/workspace/);
    await assertToolProcess(name, 'claude');
    await coiIn(ws, ['kill', name]);
  });

  test('coi shell --tool opencode starts the real opencode: its own interface, as code in /workspace', async () => {
    const ws = workspace('opencode');
    // opencode waits out its network look-ups (none succeed here) before drawing.
    const { name, screen } = await toolScreen(ws, 'opencode', /Ask anything|\/workspace\s+\d+\.\d+\.\d+/, 180_000);
    assert.doesNotMatch(screen, /command not found|No such file/);
    assert.match(screen, new RegExp(built.tools.opencode!.replace(/\./g, '\\.')), 'its version in the status line');
    await assertToolProcess(name, 'opencode');
    await coiIn(ws, ['kill', name]);
  });

  test('poweroff inside, as code and without sudo, stops the container', async () => {
    const name = `${PREFIX}poweroff`;
    await c.createInstance({ name, source: { type: 'image', alias: 'coi' }, profiles: ['default'], config: { 'user.coi.test': tag } }, { timeoutMs: 300_000 });
    await c.setState(name, 'start', { timeoutMs: 120_000 });
    await until('boot', async () => ((await c.exec(name, ['sh', '-c', 's=$(systemctl is-system-running --wait 2>/dev/null); [ "$s" = running ] || [ "$s" = degraded ]'])).exitCode === 0 ? true : undefined), 60_000);
    const which = await c.exec(name, ['sh', '-c', 'command -v poweroff'], { user: 1000, group: 1000, env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' } });
    assert.equal(which.stdout.trim(), '/usr/local/bin/poweroff');
    await c.exec(name, ['poweroff'], { user: 1000, group: 1000, cwd: '/home/code', env: { HOME: '/home/code', PATH: '/usr/local/bin:/usr/bin:/bin' } }).catch(() => undefined);
    // (Incus may answer a state query during the stop with an error: ask again.)
    await until('the container stops', async () => ((await c.getState(name).catch(() => undefined))?.status === 'Stopped' ? true : undefined), 60_000);
    // Incus may still be finishing the stop: it refuses a delete until then.
    await until('the container is deleted', async () => ((await c.deleteInstance(name, { force: true }).then(() => true, () => undefined)) ? true : undefined), 60_000, 500);
  });
});

/** `coi shell --background --tool T`, then `coi tmux capture` until the tool's screen matches. */
async function toolScreen(ws: string, tool: string, pattern: RegExp, timeoutMs: number): Promise<{ name: string; screen: string }> {
  const r = await coiIn(ws, ['shell', '--background', '--tool', tool, '--image', 'coi']);
  assert.equal(r.code, 0, `coi shell --tool ${tool}: ${r.stderr}`);
  const name = r.stdout.trim();
  const screen = await until(
    `${tool} on the screen`,
    async () => {
      const cap = await coiIn(ws, ['tmux', 'capture', name], 30_000);
      assert.equal(cap.code, 0, `coi tmux capture ${name}: ${cap.stderr}`);
      return pattern.test(cap.stdout) ? cap.stdout : undefined;
    },
    timeoutMs,
    1_000,
  );
  return { name, screen };
}

/** The tool's process runs as code with /workspace as its working directory. */
async function assertToolProcess(name: string, tool: string): Promise<void> {
  const ps = await c.exec(name, ['sh', '-c', `for p in $(pgrep -x ${tool}); do echo "$(stat -c %U /proc/$p) $(readlink /proc/$p/cwd)"; done`]);
  assert.match(ps.stdout, /^code \/workspace$/m, `${tool} processes: ${ps.stdout}${ps.stderr}`);
}

describe('coi build custom', () => {
  test('a script builds a derived image whose marker file is in a sandbox from it', async () => {
    const r = await coi(['build', 'custom', CUSTOM, '--script', path.join(FIXTURES, 'fixture.sh'), '--format', 'json'], env(), 600_000);
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.equal(res.name, CUSTOM);
    assert.match(r.stderr, /\[script\] .*fixture\.sh as root/);
    assert.match(r.stderr, /fixture: writing the marker/, 'the script\'s output streams to the terminal');
    assert.ok(res.tools.claude, 'the agents of the base are recorded too');
    const info = JSON.parse((await coi(['image', 'info', CUSTOM, '--format', 'json'], env())).stdout);
    assert.equal(info.kind, 'custom');
    assert.equal(info.properties['coi.base'], 'coi');
    assert.match(info.properties['coi.script.sha256'], /^[0-9a-f]{64}$/);
    const ws = workspace('custom');
    const run = await coiIn(ws, ['run', '--image', CUSTOM, '--', 'cat', '/opt/coi-fixture/marker']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'built by coi build custom\n');
    assert.deepEqual(await buildContainers(), [], 'no temporary container is left');
  });

  test('a failing script fails the build naming its step, keeps the log, and leaves nothing', async () => {
    const name = `${CUSTOM}-f`;
    const r = await coi(['build', 'custom', name, '--base', 'coi-base', '--command', 'echo about to fail', '--command', 'exit 3'], env(), 300_000);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /build step "commands" failed: the script exited with 3/);
    const log = /log: (\S+\.log)/.exec(r.stderr)?.[1];
    assert.ok(log && existsSync(log), `the log is kept: ${r.stderr}`);
    const text = readFileSync(log!, 'utf8');
    assert.match(text, /about to fail/);
    assert.match(text, /!!! \[commands\] failed/);
    assert.deepEqual(await aliasesOf(name), []);
    assert.deepEqual(await buildContainers(), []);
  });

  test('kill -9 of coi build halfway leaves no temporary container and no alias; the next build succeeds', async () => {
    const name = `${CUSTOM}-k`;
    const b = await startUntil(['build', 'custom', name, '--script', path.join(FIXTURES, 'slow.sh'), '--base', 'coi-base'], /slow: started/);
    const tempName = /temporary container (coi-build-\S+)/.exec(b.stderr())?.[1];
    assert.ok(tempName && (await c.instanceExists(tempName)), 'the build runs in a temporary container');
    b.child.kill('SIGKILL');
    await b.exited;
    // The build's watchdog sees coi die and removes what it left.
    await until('the temporary container is removed', async () => ((await c.instanceExists(tempName!)) ? undefined : true), 60_000);
    assert.deepEqual(await aliasesOf(name), [], 'no alias, whole or half');
    const next = await coi(['build', 'custom', name, '--script', path.join(FIXTURES, 'fixture.sh'), '--base', 'coi-base', '--format', 'json', '--quiet'], env(), 600_000);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual((await aliasesOf(name)).length, 2, 'the name and one version');
    assert.deepEqual(await buildContainers(), []);
  });

  test('Ctrl-C cancels: exit 130, the temporary container deleted at once, no alias', async () => {
    const name = `${CUSTOM}-c`;
    const b = await startUntil(['build', 'custom', name, '--script', path.join(FIXTURES, 'slow.sh'), '--base', 'coi-base'], /slow: started/);
    const tempName = /temporary container (coi-build-\S+)/.exec(b.stderr())?.[1]!;
    b.child.kill('SIGINT');
    assert.equal(await b.exited, 130, b.stderr());
    assert.match(b.stderr(), /cancelled/);
    assert.equal(await c.instanceExists(tempName), false, 'deleted before coi exited');
    assert.deepEqual(await aliasesOf(name), []);
  });
});

describe('an interrupted default build', () => {
  test('kill -9 during the package step leaves no scratch folder and no partial cache file; coi is untouched and the next build succeeds', async () => {
    const before = await c.imageAlias('coi');
    const cacheBefore = readdirSync(path.join(CACHE, 'images')).sort();
    const b = await startUntil(['build', '--offline', '--force'], /\[packages\]/);
    await sleep(3_000); // apt is at work in the rootfs
    const id = /build (\d{8}-\d{6}-[0-9a-f]{6}) of coi/.exec(b.stderr())?.[1];
    const scratch = [`imgbuild-${id}`];
    assert.ok(existsSync(path.join(CACHE, scratch[0]!)), `the build has a scratch folder: ${b.stderr()}`);
    b.child.kill('SIGKILL');
    await b.exited;
    await until('the scratch folder is removed', async () => (readdirSync(CACHE).some((n) => scratch.includes(n)) ? undefined : true), 60_000);
    assert.deepEqual(readdirSync(path.join(CACHE, 'images')).sort(), cacheBefore, 'no new or partial file in the cache');
    assert.equal(await c.imageAlias('coi'), before, 'coi still points at the same image');
    const next = await coi(['build', '--offline', '--format', 'json', '--quiet'], env(), 40 * 60_000);
    assert.equal(next.code, 0, next.stderr);
    assert.equal(JSON.parse(next.stdout).fingerprint, before);
    assert.ok(!existsSync(path.join(CACHE, scratch[0]!)));
  });
});

test('coi clean finds nothing of these builds left', async () => {
  const r = await coi(['clean', '--dry-run'], env());
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, new RegExp(CUSTOM));
  writeFileSync(path.join(root, 'done'), '');
});

describe('builds over JSON-RPC', () => {
  test('build/start streams $/build/progress steps and lines and ends with $/build/finished; build/cancel leaves nothing', async () => {
    const child = spawn(process.execPath, [HELPER, '--stdio'], { env: { ...process.env, ...env() }, stdio: ['pipe', 'pipe', 'ignore'] });
    const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    const progress: { buildId: string; step: string; title?: string; line?: string }[] = [];
    const finished: { buildId: string; ok: boolean; result?: { name: string; fingerprint: string }; error?: { code: string; step?: string } }[] = [];
    onNotify(conn, BuildProgress, (p) => progress.push(p));
    onNotify(conn, BuildFinished, (f) => finished.push(f));
    conn.listen();
    const name = `${CUSTOM}-r`;
    try {
      const started = await call(conn, BuildStart, { kind: 'custom', name, base: 'coi-base', commands: ['echo rpc-build-says-hello', 'touch /opt/rpc-marker'] });
      assert.match(started.log, /build-.*\.log$/);
      const done = await until('the build finishes', async () => finished.find((f) => f.buildId === started.buildId), 600_000);
      assert.equal(done.ok, true, JSON.stringify(done.error));
      assert.equal(done.result!.name, name);
      const mine = progress.filter((p) => p.buildId === started.buildId);
      for (const step of ['container', 'commands', 'image', 'publish']) assert.ok(mine.some((p) => p.step === step && p.title), `step ${step}`);
      assert.ok(mine.some((p) => p.step === 'commands' && p.line === 'rpc-build-says-hello'), 'log lines of the step');
      const list = await call(conn, ImageList, { all: false });
      assert.ok(list.images.some((i) => i.aliases.includes(name) && i.kind === 'custom'));
      const del = await call(conn, ImageDelete, { name });
      assert.ok(del.aliases.includes(name));
      assert.deepEqual(await aliasesOf(name), []);

      // Cancel while the script runs.
      const slow = await call(conn, BuildStart, { kind: 'custom', name, base: 'coi-base', script: path.join(FIXTURES, 'slow.sh') });
      await until('the script runs', async () => (progress.some((p) => p.buildId === slow.buildId && p.line === 'slow: started') ? true : undefined), 300_000);
      const temp = /temporary container (coi-build-\S+)/.exec(progress.find((p) => p.buildId === slow.buildId && p.step === 'container')?.title ?? '')?.[1];
      assert.ok(temp);
      assert.deepEqual(await call(conn, BuildCancel, { buildId: slow.buildId }), { cancelled: true });
      const end = await until('the cancelled build finishes', async () => finished.find((f) => f.buildId === slow.buildId), 120_000);
      assert.equal(end.ok, false);
      assert.equal(end.error!.code, 'CANCELLED');
      assert.equal(end.error!.step, 'script', 'the step it was cancelled in');
      assert.equal(await c.instanceExists(temp!), false);
      assert.deepEqual(await aliasesOf(name), []);
    } finally {
      conn.dispose();
      child.kill();
    }
  });
});
