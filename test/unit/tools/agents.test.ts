import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { pickSession, SessionMetadata } from '../../../helper/sessions/store';
import { sandboxContext } from '../../../helper/tools/context';
import { mergeJson } from '../../../helper/tools/json';
import { CLAUDE_MANAGED_SETTINGS, CONTEXT_BEGIN, CONTEXT_END, getTool, LaunchContext, upsertManagedBlock } from '../../../helper/tools/registry';
import { safeStatePath, sessionStatePaths } from '../../../helper/sessions/paths';
import { LABELS, parseStateDirsLabel } from '../../../helper/sandbox/labels';
import { buildInstanceSpec, SandboxSpecInput } from '../../../helper/sandbox/spec';
import { DEFAULT_NETWORK } from '../../../helper/sandbox/network-label';

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

test('Claude Code: bypass goes into its user and managed settings, the trust of /workspace and flags; interactive takes a persistent bypass back out', () => {
  const claude = getTool('claude');
  assert.deepEqual(claude.launch(ctx('bypass')), ['claude', '--permission-mode', 'bypassPermissions']);
  assert.deepEqual(claude.launch(ctx('interactive')), ['claude']);
  assert.deepEqual(claude.resume(ctx('bypass')).slice(-1), ['--continue']);
  assert.equal(claude.resumable?.(ctx('bypass')), 'ls /home/code/.claude/projects/-workspace/*.jsonl >/dev/null 2>&1');
  const files = (mode: 'bypass' | 'interactive') => Object.fromEntries(claude.files(ctx(mode)).map((f) => [f.path, f]));
  const update = (mode: 'bypass' | 'interactive', file: string, existing: string | undefined) => {
    const out = files(mode)[file]!.update(existing);
    return out === undefined ? undefined : JSON.parse(out);
  };
  const settings = update('bypass', '/home/code/.claude/settings.json', '{"theme":"dark"}');
  assert.deepEqual(settings, { theme: 'dark', permissions: { defaultMode: 'bypassPermissions' }, skipDangerousModePermissionPrompt: true });
  assert.deepEqual(update('interactive', '/home/code/.claude/settings.json', JSON.stringify(settings)), { theme: 'dark', permissions: {} });
  assert.equal(update('interactive', '/home/code/.claude/settings.json', undefined), undefined, 'no file is made only to say nothing');
  assert.deepEqual(update('interactive', '/home/code/.claude/settings.json', 'null'), { permissions: {} }, 'a damaged file does not crash the launch');
  // Managed settings: root's, where Claude Code looks for them on Linux.
  assert.equal(files('bypass')[CLAUDE_MANAGED_SETTINGS]!.owner, 'root');
  assert.equal(CLAUDE_MANAGED_SETTINGS, '/etc/claude-code/managed-settings.json');
  assert.deepEqual(update('bypass', CLAUDE_MANAGED_SETTINGS, undefined), { permissions: { defaultMode: 'bypassPermissions' }, skipDangerousModePermissionPrompt: true });
  assert.deepEqual(update('interactive', CLAUDE_MANAGED_SETTINGS, '{"permissions":{"defaultMode":"bypassPermissions","deny":["x"]},"skipDangerousModePermissionPrompt":true}'), { permissions: { deny: ['x'] } });
  const state = update('bypass', '/home/code/.claude.json', 'not json');
  assert.equal(state.hasCompletedOnboarding, true);
  assert.equal(state.bypassPermissionsModeAccepted, true);
  assert.equal(state.projects['/workspace'].hasTrustDialogAccepted, true);
  const kept = update('bypass', '/home/code/.claude.json', '{"projects":{"/workspace":{"allowedTools":["a"]}}}');
  assert.deepEqual(kept.projects['/workspace'], { allowedTools: ['a'], hasTrustDialogAccepted: true });
  const interactive = update('interactive', '/home/code/.claude.json', undefined);
  assert.equal(interactive.bypassPermissionsModeAccepted, undefined);
  assert.equal(interactive.projects, undefined, 'interactive: Claude Code asks about the folder itself');
  assert.ok(claude.stateDirs.includes('.claude') && claude.stateDirs.includes('.claude.json'));
  assert.deepEqual(claude.credentials, ['.claude/.credentials.json'], 'only the credentials file, never the whole home');
});

test('session state paths: the tool\'s, then [tool.custom] state_dirs, never outside the home', () => {
  assert.deepEqual(sessionStatePaths(['.claude'], ['.mytool/', '~/.cache/mytool', '.claude', '../../etc', '/etc/shadow', '.', '', 'a/../../b', 7, 'x\0y']), ['.claude', '.mytool', '.cache/mytool']);
  assert.equal(safeStatePath('a/./b/'), 'a/b');
  assert.equal(safeStatePath('a/../b'), 'b');
  assert.equal(safeStatePath('..'), undefined);
  assert.deepEqual(parseStateDirsLabel('[".mytool","../x"]'), ['.mytool']);
  assert.deepEqual(parseStateDirsLabel('{"a":1}'), []);
  assert.deepEqual(parseStateDirsLabel('not json'), []);
  const spec = buildInstanceSpec(specInput({ stateDirs: ['.mytool'] }));
  assert.equal(spec.config?.[LABELS.stateDirs], '[".mytool"]');
  assert.equal(buildInstanceSpec(specInput({})).config?.[LABELS.stateDirs], undefined);
});

test('opencode lists the context file in its instructions; auto_context off leaves it (and Claude\'s block) out', () => {
  const oc = getTool('opencode').files(ctx('bypass'))[0]!;
  assert.equal(oc.path, '/home/code/.config/opencode/opencode.json');
  const cfg = JSON.parse(oc.update('{"theme":"x"}')!);
  assert.deepEqual(cfg.instructions, ['/home/code/SANDBOX_CONTEXT.md']);
  assert.equal(cfg.theme, 'x');
  assert.equal(cfg.permission.bash, 'allow');
  assert.equal(JSON.parse(getTool('opencode').files(ctx('interactive'))[0]!.update(undefined)!).permission.bash, 'ask');
  assert.equal(JSON.parse(getTool('opencode').files(ctx('bypass', { contextFile: '' }))[0]!.update(undefined)!).instructions, undefined);
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

function specInput(extra: Partial<SandboxSpecInput>): SandboxSpecInput {
  return {
    name: 'coi-12345678-1', image: 'coi', pool: 'coi', bridge: 'coibr0', workspace: '/w', slot: 1, kind: 'shell', tool: 'custom',
    persistent: false, session: 's', profile: 'default', ownerUid: 1000, ownerHome: '/home/alice', launcherPid: 1, idmap: { kind: 'shift' },
    protectedPaths: [], mounts: [], nesting: false, now: new Date(0), network: DEFAULT_NETWORK, ...extra,
  };
}
