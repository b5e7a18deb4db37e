/**
 * The Sandboxes view as a pure model: events in, state out (`reduce`), state in,
 * items out (`treeOf`, `statusBarOf`). No vscode import: the provider turns these
 * plain nodes into TreeItems, and the unit tests read them directly.
 *
 * contextValue grammar, for `when` clauses (`viewItem =~ /…/`):
 *   coi.workspace                    a workspace folder open in this window
 *   coi.workspace.other              a workspace with sandboxes, not open here
 *   coi.sandbox;state=<state>;persistent=<true|false>;kind=<shell|run>
 *                                    a slot; <state> is running, frozen, stopped,
 *                                    starting, stopping or error
 *   coi.snapshot;sandbox=<state>     a snapshot of a slot
 *   coi.snapshots.none | coi.snapshots.loading
 *   coi.status:incus | coi.status:guard
 *   coi.problem:<what>;fix=<action>  something is wrong; <action> names the fix-it
 *                                    command without its "coi." prefix (setup, restartHelper, showLog)
 *   coi.loading | coi.noFolder
 */
import type { HelperInfoResult, SandboxInfoWire, SnapshotInfoWire } from '../../helper/protocol/methods';
import type { SlotAlerts } from '../alerts/model';

export type Sandbox = SandboxInfoWire;
export type Snapshot = SnapshotInfoWire;
export type SandboxState = Sandbox['state'];

export interface Folder {
  name: string;
  /** Absolute path on the machine the extension host runs on. */
  path: string;
  /** Its real path (symlinks resolved), which is what sandboxes record; default `path`. */
  real?: string;
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

export interface SandboxesState {
  status: 'idle' | 'loading' | 'ready' | 'error';
  /** What we know, kept on screen while a new list loads or after a failed one. */
  byName: Record<string, Sandbox>;
  error?: { message: string; remedy?: Remedy };
}

export type SnapshotsState =
  | { kind: 'loading'; previous?: Snapshot[] }
  | { kind: 'ready'; list: Snapshot[] }
  | { kind: 'error'; message: string; remedy?: Remedy };

export interface ModelState {
  folders: Folder[];
  info: InfoState;
  /** Set when the helper crashed too often and will not be restarted by itself. */
  helperFailed?: string;
  sandboxes: SandboxesState;
  /** By sandbox name; absent until the slot is first expanded. */
  snapshots: Record<string, SnapshotsState>;
  /** Threat alerts not yet seen, by sandbox name (from the alerts feature). */
  alerts?: Record<string, SlotAlerts>;
}

export type ModelEvent =
  | { type: 'folders-changed'; folders: Folder[] }
  | { type: 'info-requested' }
  | { type: 'info-received'; info: HelperInfoResult }
  | { type: 'info-failed'; message: string; remedy?: Remedy }
  | { type: 'helper-gave-up'; reason: string }
  | { type: 'helper-started' }
  | { type: 'sandboxes-requested' }
  | { type: 'sandboxes-listed'; sandboxes: Sandbox[] }
  | { type: 'sandboxes-failed'; message: string; remedy?: Remedy }
  /** `$/sandbox/changed`: a sandbox appeared or changed (sandbox set) or went away (null). */
  | { type: 'sandbox-changed'; name: string; action: string; sandbox: Sandbox | null }
  | { type: 'snapshots-requested'; name: string }
  | { type: 'snapshots-listed'; name: string; snapshots: Snapshot[] }
  | { type: 'snapshots-failed'; name: string; message: string; remedy?: Remedy }
  | { type: 'snapshot-created'; name: string; snapshot: Snapshot }
  | { type: 'snapshot-deleted'; name: string; snapshot: string }
  | { type: 'alerts-changed'; alerts: Record<string, SlotAlerts> };

export const initialState = (folders: Folder[] = []): ModelState => ({ folders, info: { kind: 'idle' }, sandboxes: { status: 'idle', byName: {} }, snapshots: {} });

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
    case 'sandboxes-requested':
      return { ...state, sandboxes: { status: 'loading', byName: state.sandboxes.byName } };
    case 'sandboxes-listed': {
      const byName: Record<string, Sandbox> = {};
      for (const sb of event.sandboxes) byName[sb.name] = sb;
      return { ...state, sandboxes: { status: 'ready', byName }, snapshots: pick(state.snapshots, (n) => n in byName) };
    }
    case 'sandboxes-failed':
      return { ...state, sandboxes: { status: 'error', byName: state.sandboxes.byName, error: { message: event.message, ...(event.remedy ? { remedy: event.remedy } : {}) } } };
    case 'sandbox-changed': {
      // Most lifecycle events (an exec, a log read) change nothing we show: same state, no re-render.
      const known = state.sandboxes.byName[event.name];
      if (event.sandbox ? known && sameSandbox(known, event.sandbox) : !known) return state;
      const byName = { ...state.sandboxes.byName };
      if (event.sandbox) byName[event.name] = event.sandbox;
      else delete byName[event.name];
      const snapshots = event.sandbox ? state.snapshots : pick(state.snapshots, (n) => n !== event.name);
      return { ...state, sandboxes: { ...state.sandboxes, byName }, snapshots };
    }
    case 'snapshots-requested': {
      const cur = state.snapshots[event.name];
      const previous = cur?.kind === 'ready' ? cur.list : cur?.kind === 'loading' ? cur.previous : undefined;
      return { ...state, snapshots: { ...state.snapshots, [event.name]: previous ? { kind: 'loading', previous } : { kind: 'loading' } } };
    }
    case 'snapshots-listed':
      if (!(event.name in state.sandboxes.byName)) return state; // gone meanwhile
      return { ...state, snapshots: { ...state.snapshots, [event.name]: { kind: 'ready', list: event.snapshots } } };
    case 'snapshots-failed':
      return { ...state, snapshots: { ...state.snapshots, [event.name]: { kind: 'error', message: event.message, ...(event.remedy ? { remedy: event.remedy } : {}) } } };
    case 'snapshot-created': {
      const cur = state.snapshots[event.name];
      if (cur?.kind !== 'ready') return state; // the next list brings it
      const list = [...cur.list.filter((x) => x.name !== event.snapshot.name), event.snapshot];
      return { ...state, snapshots: { ...state.snapshots, [event.name]: { kind: 'ready', list } } };
    }
    case 'alerts-changed':
      if (JSON.stringify(event.alerts) === JSON.stringify(state.alerts ?? {})) return state;
      return { ...state, alerts: event.alerts };
    case 'snapshot-deleted': {
      const cur = state.snapshots[event.name];
      if (cur?.kind !== 'ready') return state;
      return { ...state, snapshots: { ...state.snapshots, [event.name]: { kind: 'ready', list: cur.list.filter((x) => x.name !== event.snapshot) } } };
    }
  }
}

function sameSandbox(a: Sandbox, b: Sandbox): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof Sandbox>;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

function pick<V>(rec: Record<string, V>, keep: (key: string) => boolean): Record<string, V> {
  const out: Record<string, V> = {};
  for (const [k, v] of Object.entries(rec)) if (keep(k)) out[k] = v;
  return out;
}

/** Is this an Incus event about a sandbox's snapshots (instance-snapshot-created, …)? */
export function isSnapshotAction(action: string): boolean {
  return /^instance-snapshot-/.test(action);
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

/** What a node stands for: the argument commands read when run from the tree. */
export type Target =
  | { kind: 'workspace'; path: string; name: string; open: boolean }
  | { kind: 'sandbox'; name: string; sandbox?: Sandbox }
  | { kind: 'snapshot'; sandbox: string; snapshot: string };

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
  target?: Target;
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
    const all = Object.values(state.sandboxes.byName);
    const openPaths = new Set(state.folders.map(realOf));
    for (const f of state.folders) nodes.push(workspaceNode(f, all.filter((sb) => sb.workspace === realOf(f)), state));
    // Sandboxes of workspaces not open in this window: the user's all the same.
    const others = [...new Set(all.map((sb) => sb.workspace))].filter((w) => !openPaths.has(w)).sort();
    for (const w of others) nodes.push(otherWorkspaceNode(w, all.filter((sb) => sb.workspace === w), state));
    if (state.sandboxes.status === 'error') {
      const e = state.sandboxes.error!;
      nodes.push(problem('sandboxes', 'Cannot list the sandboxes', e.message, e.remedy ?? SHOW_LOG));
    }
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

export function realOf(f: Folder): string {
  return f.real ?? f.path;
}

function bySlot(a: Sandbox, b: Sandbox): number {
  return a.slot - b.slot || a.name.localeCompare(b.name);
}

function workspaceNode(f: Folder, sandboxes: Sandbox[], state: ModelState): TreeNode {
  const slots = [...sandboxes].sort(bySlot).map((sb) => slotNode(sb, state));
  return {
    // VS Code applies an item's collapsible state only to an id it has not seen:
    // a folder that gets its first slot becomes a new (expanded) item.
    id: slots.length ? `workspace:${f.path}#slots` : `workspace:${f.path}`,
    label: f.name,
    description: workspaceSummary(sandboxes, state),
    tooltip: f.path,
    icon: { id: 'root-folder' },
    contextValue: 'coi.workspace',
    collapsible: slots.length ? 'expanded' : 'none',
    ...(slots.length ? { children: slots } : {}),
    target: { kind: 'workspace', path: f.path, name: f.name, open: true },
  };
}

function otherWorkspaceNode(path: string, sandboxes: Sandbox[], state: ModelState): TreeNode {
  const name = baseName(path);
  return {
    id: `workspace:${path}`,
    label: name,
    description: `${workspaceSummary(sandboxes, state)} · not open here`,
    tooltip: path,
    icon: { id: 'folder' },
    contextValue: 'coi.workspace.other',
    collapsible: 'collapsed',
    children: [...sandboxes].sort(bySlot).map((sb) => slotNode(sb, state)),
    target: { kind: 'workspace', path, name, open: false },
  };
}

function workspaceSummary(sandboxes: Sandbox[], state: ModelState): string {
  if (sandboxes.length === 0) {
    if (state.sandboxes.status === 'loading' || state.sandboxes.status === 'idle') return 'looking for sandboxes…';
    if (state.sandboxes.status === 'error') return 'sandboxes unknown';
    return 'no sandbox yet';
  }
  const counts = new Map<string, number>();
  for (const sb of sandboxes) counts.set(sb.state, (counts.get(sb.state) ?? 0) + 1);
  return STATE_ORDER.filter((st) => counts.has(st))
    .map((st) => `${counts.get(st)} ${st}`)
    .join(', ');
}

/** The order states are named in: what needs attention first. */
const STATE_ORDER: SandboxState[] = ['frozen', 'error', 'running', 'starting', 'stopping', 'stopped'];

export const STATE_ICONS: Record<SandboxState, NodeIcon> = {
  running: { id: 'vm-running', color: 'testing.iconPassed' },
  frozen: { id: 'debug-pause', color: 'problemsWarningIcon.foreground' },
  stopped: { id: 'vm-outline', color: 'disabledForeground' },
  starting: { id: 'loading~spin', color: 'testing.iconQueued' },
  stopping: { id: 'loading~spin', color: 'testing.iconQueued' },
  error: { id: 'error', color: 'problemsErrorIcon.foreground' },
};

/** The contextValue of a slot: see the grammar at the top. */
export function sandboxContext(sb: Pick<Sandbox, 'state' | 'persistent' | 'kind'>): string {
  return `coi.sandbox;state=${sb.state};persistent=${sb.persistent};kind=${sb.kind}`;
}

function slotNode(sb: Sandbox, state: ModelState): TreeNode {
  const parts = [sb.tool || 'no tool', sb.persistent ? 'persistent' : 'ephemeral'];
  if (sb.phase === 'creating') parts.push('creating…');
  else if (sb.state !== 'running') parts.push(sb.state);
  const alerts = state.alerts?.[sb.name];
  if (alerts && alerts.unseen > 0) parts.push(`${alerts.unseen} unseen ${alerts.unseen === 1 ? 'alert' : 'alerts'}`);
  return {
    id: `sandbox:${sb.name}`,
    label: `slot ${sb.slot}`,
    description: parts.join(' · '),
    tooltip: alerts && alerts.unseen > 0 ? `${sandboxTooltip(sb)}\nAlerts: ${alerts.unseen} unseen${alerts.worst ? `, worst ${alerts.worst.toUpperCase()}` : ''} (COI: Show Threat Alerts)` : sandboxTooltip(sb),
    icon: STATE_ICONS[sb.state],
    contextValue: sandboxContext(sb),
    collapsible: 'collapsed',
    children: snapshotChildren(sb, state.snapshots[sb.name]),
    target: { kind: 'sandbox', name: sb.name, sandbox: sb },
  };
}

export function sandboxTooltip(sb: Sandbox): string {
  return [
    `${sb.name} — ${sb.state}${sb.phase === 'creating' ? ' (still being created)' : ''}`,
    `Tool: ${sb.tool || '(none)'}${sb.kind === 'run' ? ' (coi run)' : ''}`,
    sb.persistent ? 'Persistent: kept when stopped' : 'Ephemeral: deleted when stopped',
    `Profile: ${sb.profile}`,
    `Address: ${sb.address ?? '(none)'}`,
    `Image: ${sb.image || '(unknown)'}`,
    `Session: ${sb.session || '(none)'}`,
    `Created: ${sb.createdAt}`,
    `Workspace: ${sb.workspace}`,
  ].join('\n');
}

function snapshotChildren(sb: Sandbox, snaps: SnapshotsState | undefined): TreeNode[] {
  const list = snaps?.kind === 'ready' ? snaps.list : snaps?.kind === 'loading' ? snaps.previous : undefined;
  if (snaps?.kind === 'error') {
    return [{ ...problem(`snapshots:${sb.name}`, 'Cannot list the snapshots', snaps.message, snaps.remedy ?? SHOW_LOG) }];
  }
  if (!list) {
    return [{ id: `snapshots-loading:${sb.name}`, label: 'Loading snapshots…', icon: { id: 'loading~spin' }, contextValue: 'coi.snapshots.loading', collapsible: 'none' }];
  }
  if (list.length === 0) {
    return [{ id: `snapshots-none:${sb.name}`, label: 'No snapshots', description: 'Create one from the slot\'s menu', icon: { id: 'info' }, contextValue: 'coi.snapshots.none', collapsible: 'none' }];
  }
  // Newest first: the one you most likely want back.
  return [...list]
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.name.localeCompare(b.name))
    .map((snap) => ({
      id: `snapshot:${sb.name}/${snap.name}`,
      label: snap.name,
      description: `${formatTime(snap.createdAt)}${snap.stateful ? ' · stateful' : ''}`,
      tooltip: `Snapshot ${snap.name} of ${sb.name}\nCreated: ${snap.createdAt}\n${snap.stateful ? 'Stateful: includes the running processes' : 'Stateless: the filesystem only'}`,
      icon: { id: 'history' },
      contextValue: `coi.snapshot;sandbox=${sb.state}`,
      collapsible: 'none' as const,
      target: { kind: 'snapshot' as const, sandbox: sb.name, snapshot: snap.name },
    }));
}

/** "2025-01-02 13:04" in the editor's time zone; the raw text when it is no date. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function baseName(path: string): string {
  const parts = path.split('/').filter(Boolean);
  return parts[parts.length - 1] ?? path;
}

/** The sandboxes of the workspace folders open in this window, by slot. */
export function currentSandboxes(state: ModelState): Sandbox[] {
  const open = new Set(state.folders.map(realOf));
  return Object.values(state.sandboxes.byName).filter((sb) => open.has(sb.workspace)).sort(bySlot);
}

/** Finds a node by id in a tree. */
export function findNode(nodes: TreeNode[], id: string): TreeNode | undefined {
  for (const n of nodes) {
    if (n.id === id) return n;
    const found = n.children && findNode(n.children, id);
    if (found) return found;
  }
  return undefined;
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
  const problems = [!info.incus.reachable && 'Incus is not reachable', !info.guard.reachable && 'the guard is not running'].filter((p): p is string => !!p);
  const mine = currentSandboxes(state);
  if (mine.length === 0) {
    if (problems.length) return { text: '$(warning) COI', tooltip: `COI: ${problems.join('; ')}`, background: 'statusBarItem.warningBackground' };
    return { text: '$(vm) COI', tooltip: `COI: ${describeVersions(info)}` };
  }
  // "COI: running (slot 1)", "COI: frozen (slot 2), running (slots 1, 3)"
  const groups = STATE_ORDER.map((st) => ({ st, slots: mine.filter((sb) => sb.state === st).map((sb) => sb.slot) })).filter((g) => g.slots.length > 0);
  const text = groups.map((g) => `${g.st} (slot${g.slots.length > 1 ? 's' : ''} ${g.slots.join(', ')})`).join(', ');
  const attention = groups[0]!.st === 'frozen' || groups[0]!.st === 'error';
  const icon = attention || problems.length ? '$(warning)' : groups.some((g) => g.st === 'running') ? '$(vm-running)' : '$(vm-outline)';
  const tooltip = [
    'COI sandboxes of this workspace:',
    ...mine.map((sb) => `slot ${sb.slot}: ${sb.state}, ${sb.tool}, ${sb.persistent ? 'persistent' : 'ephemeral'} (${sb.name})`),
    ...problems.map((p) => `Warning: ${p}`),
  ].join('\n');
  return {
    text: `${icon} COI: ${text}`,
    tooltip,
    ...(attention || problems.length ? { background: 'statusBarItem.warningBackground' as const } : {}),
  };
}

/** One line with the three versions: the "Show Helper and Incus Versions" message. */
export function describeVersions(info: HelperInfoResult): string {
  const helper = `COI helper ${info.helper.version} (Node ${info.helper.node})`;
  const incus = info.incus.reachable ? `Incus ${info.incus.serverVersion} (API ${info.incus.apiVersion})` : `Incus not reachable (${info.incus.error})`;
  const guard = info.guard.reachable ? `guard ${info.guard.version}` : `guard not running (${info.guard.error})`;
  return `${helper} · ${incus} · ${guard}`;
}
