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
  update(existing: string | undefined): string;
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

export interface ToolDef {
  name: string;
  description: string;
  binary(ctx: LaunchContext): string;
  launch(ctx: LaunchContext): string[];
  resume(ctx: LaunchContext): string[];
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

const claude: ToolDef = {
  name: 'claude',
  description: 'Claude Code',
  binary: (c) => c.binary || 'claude',
  launch: (c) => [c.binary || 'claude', ...(c.mode === 'bypass' ? ['--permission-mode', 'bypassPermissions'] : []), ...(c.model ? ['--model', c.model] : [])],
  // Claude keeps conversations per directory; --continue picks the newest one of /workspace.
  resume: (c) => [...claude.launch(c), '--continue'],
  stateDirs: ['.claude', '.claude.json'],
  credentials: ['.claude/.credentials.json'],
  files(c) {
    const files: ManagedFile[] = [
      ...(c.contextFile ? [{ path: `${c.home}/.claude/CLAUDE.md`, owner: 'code' as const, update: (e: string | undefined) => upsertManagedBlock(e, `Read ${c.contextFile}: the facts of the sandbox you run in.`) }] : []),
      jsonFile(`${c.home}/.claude.json`, 'code', {
        hasCompletedOnboarding: true,
        ...(c.mode === 'bypass' ? { bypassPermissionsModeAccepted: true } : {}),
      }),
    ];
    if (c.mode === 'bypass') {
      files.push(
        jsonFile(`${c.home}/.claude/settings.json`, 'code', {
          permissions: { defaultMode: 'bypassPermissions' },
          skipDangerousModePermissionPrompt: true,
        }),
      );
    } else {
      // Interactive: take out what an earlier bypass launch of a persistent sandbox wrote.
      files.push({
        path: `${c.home}/.claude/settings.json`,
        owner: 'code',
        update: (e) => {
          const v = parseJsonLoose(e) as Record<string, unknown>;
          const perms = (v.permissions ?? {}) as Record<string, unknown>;
          if (perms.defaultMode === 'bypassPermissions') delete perms.defaultMode;
          delete v.skipDangerousModePermissionPrompt;
          return `${JSON.stringify({ ...v, permissions: perms }, null, 2)}\n`;
        },
      });
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
