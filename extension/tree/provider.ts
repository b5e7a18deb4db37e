/**
 * The Sandboxes view: renders `treeOf(state)` and asks the helper for what it
 * shows. It starts nothing until VS Code first asks for its children, i.e. until
 * the view is visible; a refresh is then a new `helper/info` request.
 */
import * as vscode from 'vscode';
import { HelperInfo, HelperInfoResult } from '../../helper/protocol/methods';
import type { HelperProcess } from '../helper/process';
import { Folder, initialState, ModelEvent, ModelState, reduce, Remedy, TreeNode, treeOf } from './model';

export class SandboxesProvider implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
  private state: ModelState;
  private readonly changed = new vscode.EventEmitter<TreeNode | undefined>();
  private readonly stateChanged = new vscode.EventEmitter<ModelState>();
  private readonly disposables: vscode.Disposable[] = [];
  private inflight: Promise<void> | undefined;
  private again = false;

  readonly onDidChangeTreeData = this.changed.event;
  /** For the status bar and the tests of what follows a state change. */
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
    this.disposables.push({ dispose: () => onStart.dispose() }, { dispose: () => onState.dispose() });
  }

  get current(): ModelState {
    return this.state;
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    return toTreeItem(node);
  }

  getChildren(node?: TreeNode): TreeNode[] {
    if (node) return node.children ?? [];
    // The first look at the view is what starts the helper.
    if (this.state.info.kind === 'idle') void this.refresh();
    return treeOf(this.state);
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

  private async load(): Promise<void> {
    this.dispatch({ type: 'info-requested' });
    try {
      const info = await this.helper.request(HelperInfo, {});
      this.dispatch({ type: 'info-received', info });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      const remedy = (e as { remedy?: Remedy }).remedy;
      this.log.warn(`helper/info failed: ${message}`);
      this.dispatch({ type: 'info-failed', message, ...(remedy ? { remedy } : {}) });
    }
  }

  private dispatch(event: ModelEvent): void {
    this.state = reduce(this.state, event);
    this.changed.fire(undefined);
    this.stateChanged.fire(this.state);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}

export function currentFolders(): Folder[] {
  return (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => ({ name: f.name, path: f.uri.fsPath }));
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
