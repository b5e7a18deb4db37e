/**
 * The Sandboxes view: renders `treeOf(state)` and asks the helper for what it
 * shows. It starts nothing until VS Code first asks for its children, i.e. until
 * the view is visible; a refresh is then `helper/info` plus `sandbox/list`.
 * After that the view is live: every `$/sandbox/changed` the helper pushes (one
 * per Incus lifecycle event of our instances) goes into the model, and a
 * snapshot event re-lists that slot's snapshots (debounced). No polling.
 */
import { realpathSync } from 'node:fs';
import * as vscode from 'vscode';
import { HelperInfo, HelperInfoResult, SandboxChanged, SandboxList, SnapshotList } from '../../helper/protocol/methods';
import type { HelperProcess } from '../helper/process';
import { findNode, Folder, initialState, isSnapshotAction, ModelEvent, ModelState, reduce, Remedy, Sandbox, TreeNode, treeOf } from './model';

const SNAPSHOT_DEBOUNCE_MS = 300;

export class SandboxesProvider implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
  private state: ModelState;
  private tree: TreeNode[] | undefined;
  private readonly changed = new vscode.EventEmitter<TreeNode | undefined>();
  private readonly stateChanged = new vscode.EventEmitter<ModelState>();
  private readonly disposables: vscode.Disposable[] = [];
  private readonly snapshotTimers = new Map<string, NodeJS.Timeout>();
  private inflight: Promise<void> | undefined;
  private again = false;

  readonly onDidChangeTreeData = this.changed.event;
  /** For the status bar, the agent terminals and the tests of what follows a state change. */
  readonly onDidChangeState = this.stateChanged.event;

  constructor(
    private readonly helper: HelperProcess,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.state = initialState(currentFolders());
    this.disposables.push(
      this.changed,
      this.stateChanged,
      vscode.workspace.onDidChangeWorkspaceFolders(() => this.dispatch({ type: 'folders-changed', folders: currentFolders() })),
    );
    // A helper that came back after a crash: show what it says now, if anyone is looking.
    const onStart = helper.onDidStart(() => {
      this.dispatch({ type: 'helper-started' });
      if (this.state.info.kind !== 'idle') void this.refresh();
    });
    const onState = helper.onDidChangeState((s) => {
      if (s.kind === 'failed') this.dispatch({ type: 'helper-gave-up', reason: s.reason });
    });
    const onChanged = helper.onNotification(SandboxChanged, (n) => {
      this.log.debug(`sandbox ${n.name}: ${n.action}${n.sandbox ? ` (${n.sandbox.state})` : ' (gone)'}`);
      this.dispatch({ type: 'sandbox-changed', name: n.name, action: n.action, sandbox: n.sandbox });
      if (n.sandbox && isSnapshotAction(n.action) && this.state.snapshots[n.name]) this.scheduleSnapshots(n.name);
    });
    this.disposables.push(onStart, onState, onChanged);
  }

  get current(): ModelState {
    return this.state;
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    return toTreeItem(node);
  }

  getChildren(node?: TreeNode): TreeNode[] {
    if (!node) {
      // The first look at the view is what starts the helper.
      if (this.state.info.kind === 'idle') void this.refresh();
      return this.roots();
    }
    // The node VS Code holds may be from an older render: answer with the current one.
    const cur = findNode(this.roots(), node.id) ?? node;
    if (cur.target?.kind === 'sandbox' && this.state.snapshots[cur.target.name] === undefined) void this.loadSnapshots(cur.target.name);
    return cur.children ?? [];
  }

  getParent(node: TreeNode): TreeNode | undefined {
    return parentOf(this.roots(), node.id);
  }

  /** The current node with this id (for reveal). */
  node(id: string): TreeNode | undefined {
    return findNode(this.roots(), id);
  }

  private roots(): TreeNode[] {
    this.tree ??= treeOf(this.state);
    return this.tree;
  }

  /** Asks the helper again. Concurrent calls share one request, plus one more if asked meanwhile. */
  refresh(): Promise<void> {
    if (this.inflight) {
      this.again = true;
      return this.inflight;
    }
    this.inflight = (async () => {
      do {
        this.again = false;
        await this.load();
      } while (this.again);
    })().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** An answer to helper/info obtained elsewhere (a command): the view shows it too. */
  accept(info: HelperInfoResult): void {
    this.dispatch({ type: 'info-received', info });
  }

  /** A sandbox list obtained elsewhere (a command's quick pick). */
  acceptSandboxes(sandboxes: Sandbox[]): void {
    this.dispatch({ type: 'sandboxes-listed', sandboxes });
  }

  /** Anything a command learnt (a sandbox opened, a snapshot created). */
  apply(event: ModelEvent): void {
    this.dispatch(event);
  }

  private async load(): Promise<void> {
    this.dispatch({ type: 'info-requested' });
    this.dispatch({ type: 'sandboxes-requested' });
    const [info, list] = await Promise.allSettled([this.helper.request(HelperInfo, {}), this.helper.request(SandboxList, {})]);
    if (info.status === 'fulfilled') {
      this.dispatch({ type: 'info-received', info: info.value });
    } else {
      const { message, remedy } = describe(info.reason);
      this.log.warn(`helper/info failed: ${message}`);
      this.dispatch({ type: 'info-failed', message, ...(remedy ? { remedy } : {}) });
    }
    if (list.status === 'fulfilled') {
      this.dispatch({ type: 'sandboxes-listed', sandboxes: list.value.sandboxes });
      // Slots whose snapshots are on screen: list them again too (a manual refresh is never debounced).
      for (const name of Object.keys(this.state.snapshots)) void this.loadSnapshots(name);
    } else {
      const { message, remedy } = describe(list.reason);
      this.log.warn(`sandbox/list failed: ${message}`);
      this.dispatch({ type: 'sandboxes-failed', message, ...(remedy ? { remedy } : {}) });
    }
  }

  /** Lists a slot's snapshots now. */
  async loadSnapshots(name: string): Promise<void> {
    this.dispatch({ type: 'snapshots-requested', name });
    try {
      const { snapshots } = await this.helper.request(SnapshotList, { name });
      this.dispatch({ type: 'snapshots-listed', name, snapshots });
    } catch (e) {
      const { message, remedy } = describe(e);
      this.log.warn(`snapshot/list ${name} failed: ${message}`);
      this.dispatch({ type: 'snapshots-failed', name, message, ...(remedy ? { remedy } : {}) });
    }
  }

  private scheduleSnapshots(name: string): void {
    clearTimeout(this.snapshotTimers.get(name));
    this.snapshotTimers.set(
      name,
      setTimeout(() => {
        this.snapshotTimers.delete(name);
        if (name in this.state.sandboxes.byName) void this.loadSnapshots(name);
      }, SNAPSHOT_DEBOUNCE_MS),
    );
  }

  private dispatch(event: ModelEvent): void {
    const next = reduce(this.state, event);
    if (next === this.state) return;
    this.state = next;
    this.tree = undefined;
    this.changed.fire(undefined);
    this.stateChanged.fire(this.state);
  }

  dispose(): void {
    for (const t of this.snapshotTimers.values()) clearTimeout(t);
    for (const d of this.disposables) d.dispose();
  }
}

function describe(e: unknown): { message: string; remedy?: Remedy } {
  const message = e instanceof Error ? e.message : String(e);
  const remedy = (e as { remedy?: Remedy }).remedy;
  return remedy ? { message, remedy } : { message };
}

function parentOf(nodes: TreeNode[], id: string, parent?: TreeNode): TreeNode | undefined {
  for (const n of nodes) {
    if (n.id === id) return parent;
    const found = n.children && parentOf(n.children, id, n);
    if (found) return found;
  }
  return undefined;
}

export function currentFolders(): Folder[] {
  return (vscode.workspace.workspaceFolders ?? [])
    .filter((f) => f.uri.scheme === 'file')
    .map((f) => {
      const folder: Folder = { name: f.name, path: f.uri.fsPath };
      try {
        const real = realpathSync(f.uri.fsPath);
        if (real !== f.uri.fsPath) folder.real = real;
      } catch {
        // gone: sandboxes recorded its real path, which we cannot know now
      }
      return folder;
    });
}

export function toTreeItem(node: TreeNode): vscode.TreeItem {
  const collapsible =
    node.collapsible === 'expanded'
      ? vscode.TreeItemCollapsibleState.Expanded
      : node.collapsible === 'collapsed'
        ? vscode.TreeItemCollapsibleState.Collapsed
        : vscode.TreeItemCollapsibleState.None;
  const item = new vscode.TreeItem(node.label, collapsible);
  item.id = node.id;
  if (node.description !== undefined) item.description = node.description;
  if (node.tooltip !== undefined) item.tooltip = node.tooltip;
  item.iconPath = new vscode.ThemeIcon(node.icon.id, node.icon.color ? new vscode.ThemeColor(node.icon.color) : undefined);
  item.contextValue = node.contextValue;
  if (node.command) item.command = { command: node.command.command, title: node.command.title, arguments: node.command.arguments ?? [] };
  return item;
}
