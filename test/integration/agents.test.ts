/**
 * The real agents in real sandboxes (image `coi`: Claude Code 2.x and
 * opencode 1.x, user `code`): what the user sees on the tool's first screen,
 * the settings that make it run without asking (or ask), the sandbox context,
 * and sessions that come back in a new container with the tool resuming.
 *
 * The sandboxes sit on the bridge whose only gateway is the dead-end
 * namespace: the tools' calls to their APIs go nowhere, which is why their
 * first screens (and Claude Code's "Not logged in" answer) are what we assert.
 * opencode waits out its network look-ups before it draws (about a minute), so
 * it is started first and checked last, while Claude's tests run.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { coi, CoiResult, deleteByPrefix, requireIncus, sleep } from './support';

const PREFIX = `coi-ag${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-agents-');
const home = path.join(root, 'home');
const DEAD_END_GATEWAY = '10.213.0.2';
let c: IncusClient;

before(async () => {
  c = await requireIncus();
  if (!(await c.imageAlias('coi'))) throw new Error('these tests need the agent image coi (run "sudo node dist/helper.js build" first)');
  mkdirSync(path.join(home, '.coi', 'profiles', 'ask'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi"\n');
  // A profile that only turns the prompts back on.
  writeFileSync(path.join(home, '.coi', 'profiles', 'ask', 'config.toml'), '[tool]\npermission_mode = "interactive"\n');
});
after(async () => {
  await deleteByPrefix(c, PREFIX);
  rmSync(root, { recursive: true, force: true });
});

function coiIn(ws: string, args: string[], timeoutMs = 300_000): Promise<CoiResult> {
  return coi(args, { HOME: home, COI_CONTAINER_PREFIX: PREFIX }, timeoutMs, ws);
}

function workspace(name: string): string {
  const ws = path.join(root, name);
  mkdirSync(ws, { recursive: true });
  return ws;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

async function launch(ws: string, args: string[]): Promise<string> {
  const r = await coiIn(ws, ['shell', '--background', ...args]);
  assert.equal(r.code, 0, `coi shell ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** `coi tmux capture` until the screen matches: what the user would see on attaching. */
async function screen(ws: string, name: string, pattern: RegExp, timeoutMs: number): Promise<string> {
  let last = '';
  try {
    return await until(
      `${pattern} on the screen of ${name}`,
      async () => {
        const cap = await coiIn(ws, ['tmux', 'capture', name], 30_000);
        assert.equal(cap.code, 0, `coi tmux capture ${name}: ${cap.stderr}`);
        last = cap.stdout;
        return pattern.test(cap.stdout) ? cap.stdout : undefined;
      },
      timeoutMs,
      1_000,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\nlast screen:\n${last}`);
  }
}

interface HostProcess {
  pid: number;
  argv: string[];
  /** The uid inside the container, mapped back through the process's uid_map. */
  uid: number;
  cwd: string;
}

/** The container's processes as the host sees them in /proc: nothing the container could fake. */
function hostProcesses(container: string): HostProcess[] {
  const inCgroup = new RegExp(`/lxc\\.payload\\.${container.replace(/[.]/g, '\\.')}(/|$)`, 'm');
  const out: HostProcess[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (!inCgroup.test(readFileSync(`/proc/${e}/cgroup`, 'utf8'))) continue;
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const hostUid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'))![1]);
      let uid = -1;
      for (const line of readFileSync(`/proc/${e}/uid_map`, 'utf8').trim().split('\n')) {
        const [inside, outside, count] = line.trim().split(/\s+/).map(Number) as [number, number, number];
        if (hostUid >= outside && hostUid < outside + count) uid = inside + hostUid - outside;
      }
      out.push({ pid: Number(e), argv, uid, cwd: readlinkSync(`/proc/${e}/cwd`) });
    } catch {
      // The process ended while we looked.
    }
  }
  return out;
}

/** The tool's own process (not tmux's shell around it): runs as code (1000) in /workspace. */
function toolProcess(container: string, tool: string): HostProcess {
  const all = hostProcesses(container);
  const mine = all.filter((p) => path.basename(p.argv[0] ?? '') === tool);
  assert.ok(mine.length > 0, `no ${tool} process in ${container}: ${all.map((p) => p.argv.join(' ')).join(' | ')}`);
  const p = mine[0]!;
  assert.equal(p.uid, 1000, `${tool} runs as code (uid 1000), not ${p.uid}`);
  assert.equal(p.cwd, '/workspace');
  return p;
}

async function readIn(name: string, file: string): Promise<string | undefined> {
  const r = await c.exec(name, ['cat', file]);
  return r.exitCode === 0 ? r.stdout : undefined;
}

async function json(name: string, file: string): Promise<Record<string, unknown> | undefined> {
  const text = await readIn(name, file);
  return text === undefined ? undefined : (JSON.parse(text) as Record<string, unknown>);
}

async function waitGone(name: string): Promise<void> {
  await until(`${name} deleted`, async () => ((await c.instanceExists(name)) ? undefined : true), 60_000, 250);
}

const CLAUDE_FIRST_SCREEN = /Claude Code v2\.\d+[\s\S]*\/workspace[\s\S]*❯/;
const BEGIN = '<!-- BEGIN COI SANDBOX CONTEXT';
const count = (text: string, needle: string) => text.split(needle).length - 1;

// Started before anything else: opencode takes a minute to draw here (see above).
let opencodeWs: string;
let opencodeName: Promise<string>;

test('the sandboxes sit behind the dead end: their only route leads to the gateway namespace', async () => {
  opencodeWs = workspace('opencode');
  opencodeName = launch(opencodeWs, ['--tool', 'opencode']);
  const name = await opencodeName;
  // The image takes its address by DHCP, which may finish after the tool started.
  const route = await until('a default route', async () => {
    const r = await c.exec(name, ['ip', 'route']);
    return /^default /m.test(r.stdout) ? r : undefined;
  }, 30_000);
  assert.match(route.stdout, new RegExp(`^default via ${DEAD_END_GATEWAY.replace(/\./g, '\\.')} dev eth0`, 'm'));
  assert.doesNotMatch(route.stdout.replace(/^default via .*$/m, ''), /via/, 'no other gateway');
});

// Claude, workspace A: launch 1 (bypass), then two resumes in new containers.
const wsA = workspace('claude-a');
const wsB = workspace('claude-b');
let sessionA = '';
let firstA = '';

test('coi shell --tool claude: Claude Code\'s own first screen, as code in /workspace, bypass set in its user and managed settings, no prompt', async () => {
  const name = await launch(wsA, ['--tool', 'claude']);
  firstA = name;
  sessionA = (await c.getInstance(name)).config['user.coi.session']!;
  const shown = await screen(wsA, name, CLAUDE_FIRST_SCREEN, 60_000);
  assert.match(shown, /bypass permissions on/, 'its status line says it runs in bypass mode');
  // Neither its folder-trust question nor its bypass-mode warning: it never stops to ask.
  assert.doesNotMatch(shown, /trust this folder|Bypass Permissions mode|Yes, I accept|No, exit/);
  assert.doesNotMatch(shown, /command not found|No such file|not installed/);
  toolProcess(name, 'claude');

  const user = await json(name, '/home/code/.claude/settings.json');
  assert.deepEqual(user?.permissions, { defaultMode: 'bypassPermissions' });
  assert.equal(user?.skipDangerousModePermissionPrompt, true);
  const managed = await json(name, '/etc/claude-code/managed-settings.json');
  assert.deepEqual(managed?.permissions, { defaultMode: 'bypassPermissions' });
  assert.equal(managed?.skipDangerousModePermissionPrompt, true);
  // Claude Code ignores managed settings a user could have written.
  assert.equal((await c.exec(name, ['stat', '-c', '%U %a', '/etc/claude-code', '/etc/claude-code/managed-settings.json'])).stdout, 'root 755\nroot 644\n');
  const state = await json(name, '/home/code/.claude.json');
  assert.equal(state?.hasCompletedOnboarding, true);
  assert.equal((state?.projects as Record<string, { hasTrustDialogAccepted?: boolean }>)['/workspace']?.hasTrustDialogAccepted, true);

  const md = (await readIn(name, '/home/code/SANDBOX_CONTEXT.md')) ?? '';
  assert.match(md, /^- Workspace: \/workspace /m);
  assert.match(md, /^- Network: restricted:/m);
  assert.match(md, /You are Claude Code running inside a COI sandbox: an Incus system container \(/);
  assert.equal(count((await readIn(name, '/home/code/.claude/CLAUDE.md')) ?? '', BEGIN), 1);

  // Session A's state: a conversation Claude Code writes itself (it records the prompt before
  // failing to reach its API), and a file of ours in its state directory.
  assert.equal((await coiIn(wsA, ['tmux', 'send', name, 'remember marker-of-session-a'])).code, 0);
  await screen(wsA, name, /❯ remember marker-of-session-a[\s\S]*(Please run \/login|Unable to connect|API Error)/, 60_000);
  await until('the transcript', async () => ((await c.exec(name, ['sh', '-c', 'grep -l marker-of-session-a /home/code/.claude/projects/-workspace/*.jsonl'])).exitCode === 0 ? true : undefined), 20_000);
  assert.equal((await c.exec(name, ['sh', '-c', 'echo session-a > /home/code/.claude/marker'], { user: 1000, group: 1000 })).exitCode, 0);
});

test('sudo poweroff inside Claude\'s sandbox still leaves a complete saved session', async () => {
  await c.exec(firstA, ['sudo', '-n', 'poweroff'], { user: 1000, group: 1000 }).catch(() => undefined);
  await waitGone(firstA);
  const dir = path.join(home, '.coi', 'sessions-claude', sessionA);
  const meta = JSON.parse(readFileSync(path.join(dir, 'metadata.json'), 'utf8'));
  assert.deepEqual(
    { ...meta, saved_at: typeof meta.saved_at },
    { session_id: sessionA, container_name: firstA, workspace: wsA, tool: 'claude', profile: 'default', persistent: false, saved_at: 'string', state_saved: true },
  );
  assert.equal(readFileSync(path.join(dir, 'home', '.claude', 'marker'), 'utf8'), 'session-a\n');
  const transcripts = readdirSync(path.join(dir, 'home', '.claude', 'projects', '-workspace')).filter((f) => f.endsWith('.jsonl'));
  assert.ok(transcripts.length > 0, 'the conversation is saved');
  assert.ok(existsSync(path.join(dir, 'home', '.claude.json')), '~/.claude.json is saved');
  const list = JSON.parse((await coiIn(wsA, ['list', '--all', '--format', 'json'])).stdout) as { sessions: { session_id: string }[] };
  assert.ok(list.sessions.some((s) => s.session_id === sessionA), 'coi list --all shows it');
});

test('permission_mode = "interactive": no bypass in Claude Code\'s settings, and it asks (its own trust question); resumed with no conversation yet, it starts fresh instead of exiting', async () => {
  const name = await launch(wsB, ['--tool', 'claude', '--profile', 'ask']);
  const shown = await screen(wsB, name, /trust this folder/, 60_000);
  assert.doesNotMatch(shown, /bypass permissions on/);
  const proc = toolProcess(name, 'claude');
  assert.ok(!proc.argv.includes('bypassPermissions'), `started without the bypass flag: ${proc.argv.join(' ')}`);
  const user = await json(name, '/home/code/.claude/settings.json');
  assert.notEqual((user?.permissions as { defaultMode?: string } | undefined)?.defaultMode, 'bypassPermissions');
  assert.notEqual(user?.skipDangerousModePermissionPrompt, true);
  const managed = await json(name, '/etc/claude-code/managed-settings.json');
  assert.notEqual((managed?.permissions as { defaultMode?: string } | undefined)?.defaultMode, 'bypassPermissions');
  const md = (await readIn(name, '/home/code/SANDBOX_CONTEXT.md')) ?? '';
  assert.doesNotMatch(md, /you do not need to ask/);
  // The newest session now, of another workspace, with a marker of its own: resume in A must not pick it.
  await c.exec(name, ['sh', '-c', 'echo session-b > /home/code/.claude/marker'], { user: 1000, group: 1000 });
  assert.equal((await coiIn(wsB, ['kill', name])).code, 0);
  await waitGone(name);
  // Nothing was said in it, so there is no conversation to continue: `claude --continue` would
  // say so and exit, taking the sandbox with it. Resumed (in bypass now), it starts fresh and waits.
  const again = await launch(wsB, ['--tool', 'claude', '--resume']);
  assert.equal(await readIn(again, '/home/code/.claude/marker'), 'session-b\n');
  assert.match(await screen(wsB, again, CLAUDE_FIRST_SCREEN, 60_000), /bypass permissions on/);
  assert.ok(!toolProcess(again, 'claude').argv.includes('--continue'));
  assert.equal((await c.getState(again)).status, 'Running');
  assert.equal((await coiIn(wsB, ['kill', again])).code, 0);
  await waitGone(again);
});

test('coi shell --resume: a new container with session A\'s state, Claude Code started with --continue showing the conversation; the managed block is there once after three launches', async () => {
  const seen = new Set([firstA]);
  for (const round of [2, 3]) {
    const name = await launch(wsA, ['--tool', 'claude', '--resume']);
    const inst = await c.getInstance(name);
    assert.equal(inst.config['user.coi.session'], sessionA, `launch ${round} carries session A`);
    const uuid = inst.config['volatile.uuid'];
    assert.ok(uuid && !seen.has(uuid), `launch ${round} is a new container`);
    seen.add(uuid);
    assert.equal(await readIn(name, '/home/code/.claude/marker'), 'session-a\n', 'session A\'s file is back, never the other workspace\'s');
    const shown = await screen(wsA, name, /marker-of-session-a/, 60_000);
    assert.match(shown, /bypass permissions on/);
    const proc = toolProcess(name, 'claude');
    assert.ok(proc.argv.includes('--continue'), `claude resumed: ${proc.argv.join(' ')}`);
    const claudeMd = (await readIn(name, '/home/code/.claude/CLAUDE.md')) ?? '';
    assert.equal(count(claudeMd, BEGIN), 1, `launch ${round}: the managed block once\n${claudeMd}`);
    assert.match(claudeMd, /Read \/home\/code\/SANDBOX_CONTEXT\.md/);
    assert.equal((await coiIn(wsA, ['kill', name])).code, 0);
    await waitGone(name);
  }
});

test('coi shell --tool opencode: opencode\'s own first screen, as code in /workspace, with the sandbox context in its instructions', async () => {
  const name = await opencodeName;
  const shown = await screen(opencodeWs, name, /Ask anything/, 180_000);
  assert.match(shown, /\/workspace\s+\d+\.\d+\.\d+/, 'its status line: the directory and its version');
  assert.doesNotMatch(shown, /command not found|No such file/);
  toolProcess(name, 'opencode');
  const cfg = await json(name, '/home/code/.config/opencode/opencode.json');
  assert.deepEqual(cfg?.instructions, ['/home/code/SANDBOX_CONTEXT.md']);
  assert.deepEqual(cfg?.permission, { edit: 'allow', bash: 'allow', webfetch: 'allow' });
  assert.match((await readIn(name, '/home/code/SANDBOX_CONTEXT.md')) ?? '', /You are opencode running inside/);
  assert.equal((await coiIn(opencodeWs, ['kill', name])).code, 0);
});

test('[tool.custom] state_dirs are saved with the session and come back on --resume', async () => {
  const ws = workspace('custom');
  mkdirSync(path.join(home, '.coi', 'profiles', 'mytool'), { recursive: true });
  writeFileSync(
    path.join(home, '.coi', 'profiles', 'mytool', 'config.toml'),
    '[container]\nimage = "coi-base"\n\n[tool]\nname = "custom"\nbinary = "bash"\n\n[tool.custom]\nargs = ["-l"]\nstate_dirs = [".mytool"]\n',
  );
  const name = await launch(ws, ['--profile', 'mytool']);
  assert.equal((await c.getInstance(name)).config['user.coi.state-dirs'], '[".mytool"]', 'recorded for the guard, which saves without the config');
  await c.exec(name, ['sh', '-c', 'mkdir -p /home/code/.mytool && echo kept > /home/code/.mytool/state'], { user: 1000, group: 1000 });
  assert.equal((await coiIn(ws, ['kill', name])).code, 0);
  await waitGone(name);
  const again = await launch(ws, ['--profile', 'mytool', '--resume']);
  assert.equal(await readIn(again, '/home/code/.mytool/state'), 'kept\n');
  assert.equal((await coiIn(ws, ['kill', again])).code, 0);
});
