/**
 * The agents COI can start, one definition each: how to launch it and how to
 * resume it, where its state lives (saved with the session), which host files
 * hold its credentials (the only host files copied in, and only if present),
 * how the permission mode maps onto its own settings, and where the sandbox
 * context is injected. Pure: the launch code applies these.
 */
import { CoiError, ErrorCodes } from '../errors';
import { mergeJson } from './json';

export type PermissionMode = 'bypass' | 'interactive';

/** A file the tool reads, rewritten from what is there (JSON merged, never clobbered). */
export interface ManagedFile {
  /** Absolute path inside the container. */
  path: string;
  /** Owner: the agent's user, or root for system-wide (managed) settings. */
  owner: 'code' | 'root';
  /** The new content; undefined leaves an absent file absent (nothing to take out of it). */
  update(existing: string | undefined): string | undefined;
}

export interface LaunchContext {
  mode: PermissionMode;
  home: string;
  contextFile: string;
  sessionId: string;
  /** [tool.custom] or [tool] binary overrides. */
  binary?: string;
  customArgs?: string[];
  customResumeArgs?: string[];
  model?: string;
}

/** Where Claude Code reads managed (policy) settings on Linux: root-owned, above every user file. */
export const CLAUDE_MANAGED_SETTINGS = '/etc/claude-code/managed-settings.json';
/** The agent's working directory; Claude Code keeps its trust decision and conversations per directory. */
export const AGENT_CWD = '/workspace';

export interface ToolDef {
  name: string;
  description: string;
  binary(ctx: LaunchContext): string;
  launch(ctx: LaunchContext): string[];
  resume(ctx: LaunchContext): string[];
  /**
   * A shell test, run as the agent's user in the container, that succeeds when
   * there is something to resume. Without it `resume` is always used; when it
   * fails the tool is launched fresh, because a tool asked to continue a
   * conversation that does not exist may exit at once (and the sandbox with it).
   */
  resumable?(ctx: LaunchContext): string;
  /** Paths relative to the home, saved with a session and restored on resume. */
  stateDirs: string[];
  /** Host paths (relative to the host home) copied to the same place in the container home. */
  credentials: string[];
  /** Files that carry the permission mode and the context. */
  files(ctx: LaunchContext): ManagedFile[];
  env(ctx: LaunchContext): Record<string, string>;
}

export const CONTEXT_BEGIN = '<!-- BEGIN COI SANDBOX CONTEXT (managed by coi; edits here are replaced) -->';
export const CONTEXT_END = '<!-- END COI SANDBOX CONTEXT -->';

/** Puts the managed block in a markdown file exactly once: replaced if present, appended if not. */
export function upsertManagedBlock(existing: string | undefined, body: string): string {
  const block = `${CONTEXT_BEGIN}\n${body.trim()}\n${CONTEXT_END}\n`;
  const text = existing ?? '';
  const start = text.indexOf(CONTEXT_BEGIN);
  const end = text.indexOf(CONTEXT_END);
  if (start >= 0 && end > start) {
    const after = text.slice(end + CONTEXT_END.length).replace(/^\n/, '');
    return `${text.slice(0, start)}${block}${after}`;
  }
  return text === '' ? block : `${text.replace(/\n*$/, '\n\n')}${block}`;
}

function jsonFile(path: string, owner: 'code' | 'root', patch: unknown): ManagedFile {
  return { path, owner, update: (existing) => `${JSON.stringify(mergeJson(parseJsonLoose(existing), patch), null, 2)}\n` };
}

function parseJsonLoose(text: string | undefined): unknown {
  if (!text || !text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** The bypass keys of Claude Code's settings: the default mode, and its one-time warning already accepted. */
const CLAUDE_BYPASS = { permissions: { defaultMode: 'bypassPermissions' }, skipDangerousModePermissionPrompt: true };

/** Takes the bypass keys out of a Claude Code settings file and keeps everything else. */
function withoutClaudeBypass(existing: string | undefined): string | undefined {
  if (existing === undefined) return undefined;
  const parsed = parseJsonLoose(existing);
  const v: Record<string, unknown> = isRecord(parsed) ? parsed : {};
  const perms: Record<string, unknown> = isRecord(v.permissions) ? v.permissions : {};
  if (perms.defaultMode === 'bypassPermissions') delete perms.defaultMode;
  delete v.skipDangerousModePermissionPrompt;
  return `${JSON.stringify({ ...v, permissions: perms }, null, 2)}\n`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const claude: ToolDef = {
  name: 'claude',
  description: 'Claude Code',
  binary: (c) => c.binary || 'claude',
  launch: (c) => [c.binary || 'claude', ...(c.mode === 'bypass' ? ['--permission-mode', 'bypassPermissions'] : []), ...(c.model ? ['--model', c.model] : [])],
  // Claude keeps conversations per directory; --continue picks the newest one of /workspace.
  resume: (c) => [...claude.launch(c), '--continue'],
  // With no conversation of /workspace, `claude --continue` says so and exits.
  resumable: (c) => `ls ${c.home}/.claude/projects/${AGENT_CWD.replace(/[^A-Za-z0-9]/g, '-')}/*.jsonl >/dev/null 2>&1`,
  stateDirs: ['.claude', '.claude.json'],
  credentials: ['.claude/.credentials.json'],
  files(c) {
    const files: ManagedFile[] = [
      ...(c.contextFile ? [{ path: `${c.home}/.claude/CLAUDE.md`, owner: 'code' as const, update: (e: string | undefined) => upsertManagedBlock(e, `Read ${c.contextFile}: the facts of the sandbox you run in.`) }] : []),
      jsonFile(`${c.home}/.claude.json`, 'code', {
        hasCompletedOnboarding: true,
        // Bypass: the container is the boundary, so the folder-trust question is answered for the
        // workspace too; interactive leaves it to the user.
        ...(c.mode === 'bypass' ? { bypassPermissionsModeAccepted: true, projects: { [AGENT_CWD]: { hasTrustDialogAccepted: true } } } : {}),
      }),
    ];
    if (c.mode === 'bypass') {
      files.push(jsonFile(`${c.home}/.claude/settings.json`, 'code', CLAUDE_BYPASS));
      // Managed settings rank above the user's, so a stray user or project file cannot turn
      // prompts back on behind the user's choice; root-owned, as Claude Code requires of them.
      files.push(jsonFile(CLAUDE_MANAGED_SETTINGS, 'root', CLAUDE_BYPASS));
    } else {
      // Interactive: take out what an earlier bypass launch of a persistent sandbox wrote.
      files.push({ path: `${c.home}/.claude/settings.json`, owner: 'code', update: withoutClaudeBypass });
      files.push({ path: CLAUDE_MANAGED_SETTINGS, owner: 'root', update: withoutClaudeBypass });
    }
    return files;
  },
  env: () => ({ DISABLE_AUTOUPDATER: '1' }),
};

const opencode: ToolDef = {
  name: 'opencode',
  description: 'opencode',
  binary: (c) => c.binary || 'opencode',
  launch: (c) => [c.binary || 'opencode'],
  resume: (c) => [c.binary || 'opencode', '--continue'],
  stateDirs: ['.config/opencode', '.local/share/opencode', '.local/state/opencode'],
  credentials: ['.local/share/opencode/auth.json'],
  files: (c) => [
    jsonFile(`${c.home}/.config/opencode/opencode.json`, 'code', {
      $schema: 'https://opencode.ai/config.json',
      ...(c.contextFile ? { instructions: [c.contextFile] } : {}),
      ...(c.mode === 'bypass' ? { permission: { edit: 'allow', bash: 'allow', webfetch: 'allow' } } : { permission: { edit: 'ask', bash: 'ask', webfetch: 'ask' } }),
      autoupdate: false,
    }),
  ],
  env: () => ({}),
};

const aider: ToolDef = {
  name: 'aider',
  description: 'Aider',
  binary: (c) => c.binary || 'aider',
  launch: (c) => [c.binary || 'aider', ...(c.contextFile ? ['--read', c.contextFile] : []), ...(c.mode === 'bypass' ? ['--yes-always'] : []), '--no-check-update'],
  resume: (c) => [...aider.launch(c), '--restore-chat-history'],
  stateDirs: ['.aider'],
  credentials: ['.aider.conf.yml'],
  files: () => [],
  env: () => ({}),
};

const codex: ToolDef = {
  name: 'codex',
  description: 'Codex CLI',
  binary: (c) => c.binary || 'codex',
  launch: (c) => [c.binary || 'codex', ...(c.mode === 'bypass' ? ['--dangerously-bypass-approvals-and-sandbox'] : ['-s', 'workspace-write', '-a', 'on-request'])],
  resume: (c) => [c.binary || 'codex', 'resume', '--last', ...codex.launch(c).slice(1)],
  stateDirs: ['.codex'],
  credentials: ['.codex/auth.json'],
  files: (c) => (c.contextFile ? [{ path: `${c.home}/.codex/AGENTS.md`, owner: 'code', update: (e) => upsertManagedBlock(e, `Read ${c.contextFile}: the facts of the sandbox you run in.`) }] : []),
  env: () => ({}),
};

const custom: ToolDef = {
  name: 'custom',
  description: 'a tool defined in [tool.custom]',
  binary: (c) => {
    if (!c.binary) throw new CoiError(ErrorCodes.INVALID_INPUT, 'tool "custom" needs [tool] binary (the executable to run)');
    return c.binary;
  },
  launch: (c) => [custom.binary(c), ...(c.customArgs ?? [])],
  resume: (c) => [custom.binary(c), ...(c.customResumeArgs ?? c.customArgs ?? [])],
  stateDirs: [],
  credentials: [],
  files: () => [],
  env: () => ({}),
};

// A plain login shell: for debugging and for scripting the sandbox itself.
const shell: ToolDef = {
  name: 'shell',
  description: 'a bash shell',
  binary: () => 'bash',
  launch: () => ['bash', '-l'],
  resume: () => ['bash', '-l'],
  stateDirs: ['.bash_history'],
  credentials: [],
  files: () => [],
  env: () => ({}),
};

const TOOLS: ToolDef[] = [claude, opencode, aider, codex, custom, shell];

export function toolNames(): string[] {
  return TOOLS.map((t) => t.name);
}

export function getTool(name: string): ToolDef {
  const t = TOOLS.find((x) => x.name === name);
  if (!t) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `unknown tool "${name}"; known tools: ${toolNames().join(', ')}`);
  }
  return t;
}
