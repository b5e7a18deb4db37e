/**
 * The Sandboxes view as a pure model: events in, state out (`reduce`), state in,
 * items out (`treeOf`, `statusBarOf`). No vscode import: the provider turns these
 * plain nodes into TreeItems, and the unit tests read them directly.
 *
 * contextValue grammar, for `when` clauses (`viewItem =~ /…/`):
 *   coi.workspace                    a workspace folder
 *   coi.status:incus | coi.status:guard
 *   coi.problem:<what>;fix=<action>  something is wrong; <action> names the fix-it
 *                                    command without its "coi." prefix (setup, restartHelper, showLog)
 *   coi.loading | coi.noFolder
 */
import type { HelperInfoResult } from '../../helper/protocol/methods';

export interface Folder {
  name: string;
  /** Absolute path on the machine the extension host runs on. */
  path: string;
}

export interface Remedy {
  title: string;
  shell?: string;
  command?: string;
}

export type InfoState =
  | { kind: 'idle' }
  | { kind: 'loading'; previous?: HelperInfoResult }
  | { kind: 'ready'; info: HelperInfoResult }
  | { kind: 'error'; message: string; remedy?: Remedy };

export interface ModelState {
  folders: Folder[];
  info: InfoState;
  /** Set when the helper crashed too often and will not be restarted by itself. */
  helperFailed?: string;
}

export type ModelEvent =
  | { type: 'folders-changed'; folders: Folder[] }
  | { type: 'info-requested' }
  | { type: 'info-received'; info: HelperInfoResult }
  | { type: 'info-failed'; message: string; remedy?: Remedy }
  | { type: 'helper-gave-up'; reason: string }
  | { type: 'helper-started' };

export const initialState = (folders: Folder[] = []): ModelState => ({ folders, info: { kind: 'idle' } });

export function reduce(state: ModelState, event: ModelEvent): ModelState {
  switch (event.type) {
    case 'folders-changed':
      return { ...state, folders: event.folders };
    case 'info-requested': {
      // Keep showing what we knew while asking again: no flicker on refresh.
      const previous = state.info.kind === 'ready' ? state.info.info : state.info.kind === 'loading' ? state.info.previous : undefined;
      return { ...state, info: previous ? { kind: 'loading', previous } : { kind: 'loading' } };
    }
    case 'info-received':
      return withoutFailure({ ...state, info: { kind: 'ready', info: event.info } });
    case 'info-failed':
      return { ...state, info: { kind: 'error', message: event.message, ...(event.remedy ? { remedy: event.remedy } : {}) } };
    case 'helper-gave-up':
      return { ...state, helperFailed: event.reason };
    case 'helper-started':
      return withoutFailure(state);
  }
}

function withoutFailure(s: ModelState): ModelState {
  if (s.helperFailed === undefined) return s;
  const { helperFailed: _, ...rest } = s;
  return rest;
}

// ── items ───────────────────────────────────────────────────────────────────

export interface NodeIcon {
  /** A codicon id, e.g. "root-folder", "loading~spin". */
  id: string;
  /** A theme colour id, e.g. "problemsErrorIcon.foreground". */
  color?: string;
}

export interface NodeCommand {
  command: string;
  title: string;
  arguments?: unknown[];
}

export interface TreeNode {
  /** Stable across refreshes, so VS Code keeps selection and expansion. */
  id: string;
  label: string;
  description?: string;
  tooltip?: string;
  icon: NodeIcon;
  contextValue: string;
  collapsible: 'none' | 'collapsed' | 'expanded';
  /** Run when the item is clicked: for problems, the fix. */
  command?: NodeCommand;
  children?: TreeNode[];
}

const ok = 'testing.iconPassed';
const bad = 'problemsErrorIcon.foreground';

export const SETUP: Remedy = { title: 'Set Up This Machine', shell: 'sudo coi setup', command: 'coi.setup' };
export const RESTART_HELPER: Remedy = { title: 'Restart Helper', command: 'coi.restartHelper' };
export const SHOW_LOG: Remedy = { title: 'Show Log', command: 'coi.showLog' };

export function treeOf(state: ModelState): TreeNode[] {
  if (state.helperFailed !== undefined) {
    return [problem('helper', 'The COI helper keeps crashing', `${state.helperFailed}; it is not restarted automatically`, RESTART_HELPER)];
  }
  const info = state.info.kind === 'ready' ? state.info.info : state.info.kind === 'loading' ? state.info.previous : undefined;
  if (!info) {
    if (state.info.kind === 'error') {
      return [problem('helper', 'Cannot talk to the COI helper', state.info.message, state.info.remedy ?? SHOW_LOG)];
    }
    return [{ id: 'loading', label: 'Connecting to the COI helper…', icon: { id: 'loading~spin' }, contextValue: 'coi.loading', collapsible: 'none' }];
  }

  const nodes: TreeNode[] = [];
  if (info.incus.reachable) {
    if (state.folders.length === 0) {
      nodes.push({
        id: 'no-folder',
        label: 'Open a folder to run an agent on it',
        icon: { id: 'folder-opened' },
        contextValue: 'coi.noFolder',
        collapsible: 'none',
        command: { command: 'workbench.action.files.openFolder', title: 'Open Folder' },
      });
    }
    for (const f of state.folders) nodes.push(workspaceNode(f));
  } else {
    nodes.push(problem('incus', 'Incus is not reachable', info.incus.error, { ...SETUP, ...(info.incus.remedy ? { shell: info.incus.remedy } : {}) }));
  }
  if (info.incus.reachable) {
    nodes.push({
      id: 'status:incus',
      label: `Incus ${info.incus.serverVersion}`,
      description: `API ${info.incus.apiVersion}`,
      tooltip: `Incus server ${info.incus.serverVersion} (API ${info.incus.apiVersion}) at ${info.incus.endpoint}`,
      icon: { id: 'server-environment', color: ok },
      contextValue: 'coi.status:incus',
      collapsible: 'none',
    });
  }
  if (info.guard.reachable) {
    nodes.push({
      id: 'status:guard',
      label: `Guard ${info.guard.version}`,
      description: `pid ${info.guard.pid}`,
      tooltip: `COI guard ${info.guard.version} (pid ${info.guard.pid}) on ${info.guard.socket}`,
      icon: { id: 'shield', color: ok },
      contextValue: 'coi.status:guard',
      collapsible: 'none',
    });
  } else {
    nodes.push(problem('guard', 'The COI guard is not running', info.guard.error, { ...SETUP, shell: 'sudo coi guard start' }));
  }
  return nodes;
}

function workspaceNode(f: Folder): TreeNode {
  return {
    id: `workspace:${f.path}`,
    label: f.name,
    description: 'no sandbox yet',
    tooltip: f.path,
    icon: { id: 'root-folder' },
    contextValue: 'coi.workspace',
    collapsible: 'none',
  };
}

function problem(what: string, label: string, message: string, remedy: Remedy): TreeNode {
  const fix = remedy.command?.replace(/^coi\./, '') ?? 'none';
  const how = remedy.shell ? `${remedy.title} (${remedy.shell})` : remedy.title;
  return {
    id: `problem:${what}`,
    label,
    description: oneLine(message, 120),
    tooltip: `${message}\n\nFix: ${how}`,
    icon: { id: 'error', color: bad },
    contextValue: `coi.problem:${what};fix=${fix}`,
    collapsible: 'none',
    ...(remedy.command ? { command: { command: remedy.command, title: remedy.title } } : {}),
  };
}

function oneLine(s: string, max: number): string {
  const line = s.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

// ── status bar ──────────────────────────────────────────────────────────────

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** A theme colour id for the background, or none. */
  background?: 'statusBarItem.warningBackground' | 'statusBarItem.errorBackground';
}

export function statusBarOf(state: ModelState): StatusBarView {
  if (state.helperFailed !== undefined) {
    return { text: '$(error) COI', tooltip: `COI: ${state.helperFailed}. Click to open the Sandboxes view.`, background: 'statusBarItem.errorBackground' };
  }
  const info = state.info.kind === 'ready' ? state.info.info : state.info.kind === 'loading' ? state.info.previous : undefined;
  if (!info) {
    if (state.info.kind === 'error') return { text: '$(error) COI', tooltip: `COI: ${state.info.message}`, background: 'statusBarItem.errorBackground' };
    if (state.info.kind === 'loading') return { text: '$(loading~spin) COI', tooltip: 'COI: connecting to the helper…' };
    return { text: '$(vm) COI', tooltip: 'COI: open the Sandboxes view' };
  }
  const problems = [!info.incus.reachable && 'Incus is not reachable', !info.guard.reachable && 'the guard is not running'].filter(Boolean);
  if (problems.length) return { text: '$(warning) COI', tooltip: `COI: ${problems.join('; ')}`, background: 'statusBarItem.warningBackground' };
  return { text: '$(vm) COI', tooltip: `COI: ${describeVersions(info)}` };
}

/** One line with the three versions: the "Show Helper and Incus Versions" message. */
export function describeVersions(info: HelperInfoResult): string {
  const helper = `COI helper ${info.helper.version} (Node ${info.helper.node})`;
  const incus = info.incus.reachable ? `Incus ${info.incus.serverVersion} (API ${info.incus.apiVersion})` : `Incus not reachable (${info.incus.error})`;
  const guard = info.guard.reachable ? `guard ${info.guard.version}` : `guard not running (${info.guard.error})`;
  return `${helper} · ${incus} · ${guard}`;
}
