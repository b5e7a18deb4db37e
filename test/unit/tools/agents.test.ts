import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { pickSession, SessionMetadata } from '../../../helper/sessions/store';
import { sandboxContext } from '../../../helper/tools/context';
import { mergeJson } from '../../../helper/tools/json';
import { CONTEXT_BEGIN, CONTEXT_END, getTool, LaunchContext, upsertManagedBlock } from '../../../helper/tools/registry';

const ctx = (mode: 'bypass' | 'interactive', extra: Partial<LaunchContext> = {}): LaunchContext => ({ mode, home: '/home/code', contextFile: '/home/code/SANDBOX_CONTEXT.md', sessionId: 'sid', ...extra });

test('the managed block appears exactly once however often it is written, and user text around it stays', () => {
  let md = '# My notes\n\nkeep this\n';
  for (let i = 0; i < 3; i++) md = upsertManagedBlock(md, `context v${i}`);
  assert.equal(md.split(CONTEXT_BEGIN).length - 1, 1);
  assert.equal(md.split(CONTEXT_END).length - 1, 1);
  assert.match(md, /^# My notes\n\nkeep this\n\n/);
  assert.match(md, /context v2/);
  assert.doesNotMatch(md, /context v0|context v1/);
  assert.equal(upsertManagedBlock(undefined, 'x'), `${CONTEXT_BEGIN}\nx\n${CONTEXT_END}\n`);
});

test('Claude Code: bypass goes into its settings and flags; interactive takes a persistent bypass back out', () => {
  const claude = getTool('claude');
  assert.deepEqual(claude.launch(ctx('bypass')), ['claude', '--permission-mode', 'bypassPermissions']);
  assert.deepEqual(claude.launch(ctx('interactive')), ['claude']);
  assert.deepEqual(claude.resume(ctx('bypass')).slice(-1), ['--continue']);
  const files = (mode: 'bypass' | 'interactive') => Object.fromEntries(claude.files(ctx(mode)).map((f) => [f.path, f]));
  const settings = JSON.parse(files('bypass')['/home/code/.claude/settings.json']!.update('{"theme":"dark"}'));
  assert.deepEqual(settings, { theme: 'dark', permissions: { defaultMode: 'bypassPermissions' }, skipDangerousModePermissionPrompt: true });
  const back = JSON.parse(files('interactive')['/home/code/.claude/settings.json']!.update(JSON.stringify(settings)));
  assert.deepEqual(back, { theme: 'dark', permissions: {} });
  const state = JSON.parse(files('bypass')['/home/code/.claude.json']!.update('not json'));
  assert.equal(state.hasCompletedOnboarding, true);
  assert.equal(state.bypassPermissionsModeAccepted, true);
  assert.equal(JSON.parse(files('interactive')['/home/code/.claude.json']!.update(undefined)).bypassPermissionsModeAccepted, undefined);
  assert.ok(claude.stateDirs.includes('.claude') && claude.stateDirs.includes('.claude.json'));
  assert.deepEqual(claude.credentials, ['.claude/.credentials.json'], 'only the credentials file, never the whole home');
});

test('opencode lists the context file in its instructions; auto_context off leaves it (and Claude\'s block) out', () => {
  const oc = getTool('opencode').files(ctx('bypass'))[0]!;
  assert.equal(oc.path, '/home/code/.config/opencode/opencode.json');
  const cfg = JSON.parse(oc.update('{"theme":"x"}'));
  assert.deepEqual(cfg.instructions, ['/home/code/SANDBOX_CONTEXT.md']);
  assert.equal(cfg.theme, 'x');
  assert.equal(cfg.permission.bash, 'allow');
  assert.equal(JSON.parse(getTool('opencode').files(ctx('interactive'))[0]!.update(undefined)).permission.bash, 'ask');
  assert.equal(JSON.parse(getTool('opencode').files(ctx('bypass', { contextFile: '' }))[0]!.update(undefined)).instructions, undefined);
  assert.ok(!getTool('claude').files(ctx('bypass', { contextFile: '' })).some((f) => f.path.endsWith('CLAUDE.md')));
});

test('Aider, Codex and custom tools map modes and resume onto their own options', () => {
  assert.deepEqual(getTool('aider').launch(ctx('bypass')), ['aider', '--read', '/home/code/SANDBOX_CONTEXT.md', '--yes-always', '--no-check-update']);
  assert.ok(getTool('aider').resume(ctx('bypass')).includes('--restore-chat-history'));
  assert.deepEqual(getTool('codex').launch(ctx('bypass')), ['codex', '--dangerously-bypass-approvals-and-sandbox']);
  assert.deepEqual(getTool('codex').launch(ctx('interactive')), ['codex', '-s', 'workspace-write', '-a', 'on-request']);
  assert.deepEqual(getTool('codex').resume(ctx('bypass')).slice(0, 3), ['codex', 'resume', '--last']);
  assert.deepEqual(getTool('custom').launch(ctx('bypass', { binary: 'mytool', customArgs: ['--go'] })), ['mytool', '--go']);
  assert.deepEqual(getTool('custom').resume(ctx('bypass', { binary: 'mytool', customArgs: ['--go'], customResumeArgs: ['--again'] })), ['mytool', '--again']);
  assert.throws(() => getTool('custom').launch(ctx('bypass')), /needs \[tool\] binary/);
  assert.throws(() => getTool('nope'), /unknown tool "nope"; known tools: claude, opencode/);
});

test('the sandbox context states the real facts and names forwarded variables, never their values', () => {
  const md = sandboxContext({
    container: 'coi-1a2b3c4d-1', tool: 'Claude Code', workspace: '/workspace', persistent: false,
    network: { mode: 'allowlist', allowedDomains: ['registry.npmjs.org'] }, limits: { memory: '2GiB', maxDuration: '4h' },
    forwardedEnv: ['GITHUB_TOKEN'], readOnlyPaths: ['.git/hooks', '.vscode'], sshAgent: false, docker: false, permissionMode: 'bypass',
    profile: 'hardened', profileContexts: [{ profile: 'hardened', text: 'Never push to main.' }],
  });
  assert.match(md, /Workspace: \/workspace/);
  assert.match(md, /Network: allowlist: only registry\.npmjs\.org/);
  assert.match(md, /ephemeral/);
  assert.match(md, /Forwarded environment variables: GITHUB_TOKEN\./);
  assert.match(md, /2GiB memory/);
  assert.match(md, /stopped after 4h/);
  assert.match(md, /\.git\/hooks, \.vscode/);
  assert.match(md, /## From profile hardened\n\nNever push to main\./);
});

test('resume picks the newest session of this workspace, or the given id, and never another workspace\'s', () => {
  const s = (id: string, ws: string, at: string): SessionMetadata => ({ session_id: id, container_name: 'c', workspace: ws, tool: 'claude', profile: 'default', persistent: false, saved_at: at, state_saved: true });
  const all = [s('33333333-0000-4000-8000-000000000000', '/other', '2026-03-01'), s('22222222-0000-4000-8000-000000000000', '/ws', '2026-02-01'), s('11111111-0000-4000-8000-000000000000', '/ws', '2026-01-01')];
  assert.equal(pickSession(all, '/ws')?.session_id.slice(0, 8), '22222222');
  assert.equal(pickSession(all, '/ws', '1111')?.session_id.slice(0, 8), '11111111');
  assert.equal(pickSession(all, '/ws', '3333'), undefined, 'an id of another workspace is not found');
  assert.equal(pickSession(all, '/nowhere'), undefined);
});

test('mergeJson merges objects deeply and lets the patch win elsewhere', () => {
  assert.deepEqual(mergeJson({ a: { b: 1, c: 2 }, l: [1] }, { a: { c: 3 }, l: [2] }), { a: { b: 1, c: 3 }, l: [2] });
  assert.deepEqual(mergeJson('junk', { a: 1 }), { a: 1 });
});
