/**
 * Threats in the editor. Every `$/threat` the helper forwards goes into the
 * alert log at once; WARNING becomes a warning message, HIGH and CRITICAL an
 * error message saying what was seen and what the guard did, with the
 * buttons that apply. A burst (several events within GATHER_MS, or more
 * arriving while the last notification is younger than COOLDOWN_MS and no
 * worse than it) becomes one notification with a count (model.notifyAt). The tree and a status bar item show each
 * sandbox's unseen alerts; the alert view (coi.showAlerts) shows them all.
 */
import * as vscode from 'vscode';
import { AuditLocate, AuditRecent, ThreatNotification } from '../../helper/protocol/methods';
import type { HelperProcess } from '../helper/process';
import type { SandboxesProvider } from '../tree/provider';
import type { ModelState } from '../tree/model';
import type { SandboxesNow } from './messages';
import { ACTION_LABELS, AlertAction, AlertEvent, AlertLog, actionsFor, Level, notifyAt, planNotification, unseenStatus, worstLevel } from './model';
import { AlertsPanel } from './panel';

/** Events this close together are one burst. */
export const GATHER_MS = 250;
/** At most one notification this often; what comes meanwhile is folded into the next. */
export const COOLDOWN_MS = 4_000;
/** How long a notification waits for a slot's snapshot list before it decides on "Restore Snapshot". */
const SNAPSHOT_WAIT_MS = 300;

const ACTION_COMMANDS: Record<AlertAction, string> = { resume: 'coi.resume', kill: 'coi.kill', restoreSnapshot: 'coi.snapshot.restore' };

export class AlertsController implements vscode.Disposable {
  private readonly log = new AlertLog();
  private readonly panel: AlertsPanel;
  private readonly status: vscode.StatusBarItem;
  private readonly disposables: vscode.Disposable[] = [];
  private pending: AlertEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private lastShown: { at: number; level: Level } | undefined;
  private history: Promise<void> | undefined;
  private focusOnReady: string | undefined;

  constructor(
    extensionUri: vscode.Uri,
    private readonly helper: HelperProcess,
    private readonly provider: SandboxesProvider,
    private readonly out: vscode.LogOutputChannel,
  ) {
    this.panel = new AlertsPanel(extensionUri, {
      onReady: () => this.postAll(),
      onMessage: (m) => void this.onWebviewMessage(m),
      onViewState: (visible) => {
        if (visible) this.seen();
      },
      log: (m) => out.warn(m),
    });
    this.status = vscode.window.createStatusBarItem('coi.alerts', vscode.StatusBarAlignment.Left, 9);
    this.status.name = 'COI Threat Alerts';
    this.status.command = 'coi.showAlerts';
    this.disposables.push(
      this.panel,
      this.status,
      toDisposable(helper.onNotification(ThreatNotification, (e) => this.onThreat(e))),
      // The buttons of the view follow the sandboxes' states.
      provider.onDidChangeState((s) => this.panel.post({ type: 'sandboxes', ...sandboxesNow(s) })),
    );
  }

  /** A threat pushed by the guard, through the helper. */
  onThreat(e: AlertEvent): void {
    const fresh = this.log.add([e], { live: true });
    if (fresh.length === 0) return;
    this.out.info(`threat ${e.record.level.toUpperCase()} in ${e.container}: ${e.record.title} (${e.record.action})`);
    if (this.panel.visible) this.log.markSeen();
    this.panel.post({ type: 'add', events: fresh });
    this.changed();
    if (planNotification(fresh)) this.queue(fresh);
  }

  private queue(events: AlertEvent[]): void {
    this.pending.push(...events);
    const at = notifyAt(Date.now(), worstLevel(this.pending), this.lastShown, GATHER_MS, COOLDOWN_MS);
    if (this.timer && this.timerAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const burst = this.pending;
      this.pending = [];
      this.lastShown = { at: Date.now(), level: worstLevel(burst) };
      void this.notify(burst);
    }, Math.max(0, at - Date.now()));
  }

  private async notify(burst: AlertEvent[]): Promise<void> {
    const plan = planNotification(burst);
    if (!plan) return;
    const name = plan.primary.container;
    const snapshots = await this.snapshotCount(name);
    const actions = actionsFor(plan.primary, snapshots === undefined ? {} : { snapshots });
    const buttons = ['Show Details', ...actions.map((a) => ACTION_LABELS[a])];
    const show = plan.severity === 'warning' ? vscode.window.showWarningMessage : vscode.window.showErrorMessage;
    const pick = await show(plan.message, ...buttons);
    if (!pick) return;
    if (pick === 'Show Details') {
      this.show(plan.primary.record.id);
      return;
    }
    const action = actions.find((a) => ACTION_LABELS[a] === pick);
    if (action) await this.act(action, name);
  }

  /** Snapshots of the sandbox, if the tree knows or can learn them quickly; undefined: unknown. */
  private async snapshotCount(name: string): Promise<number | undefined> {
    const known = this.provider.current.snapshots[name];
    if (known?.kind === 'ready') return known.list.length;
    if (!(name in this.provider.current.sandboxes.byName)) return undefined;
    await Promise.race([this.provider.loadSnapshots(name), new Promise((r) => setTimeout(r, SNAPSHOT_WAIT_MS))]);
    const now = this.provider.current.snapshots[name];
    return now?.kind === 'ready' ? now.list.length : undefined;
  }

  private act(action: AlertAction, container: string): Thenable<unknown> {
    this.log.markSeen(container);
    this.changed();
    // The commands of the tree: they confirm where they should (Kill) and report failures.
    return vscode.commands.executeCommand(ACTION_COMMANDS[action], container);
  }

  /** coi.showAlerts: the view, scrolled to an event when one is given. */
  show(eventId?: string): void {
    this.focusOnReady = eventId;
    this.panel.show();
    if (eventId) this.panel.post({ type: 'focus', id: eventId });
    this.seen();
    // The history from the audit logs, once: what happened before this window listened.
    this.history ??= this.loadHistory();
    // The buttons need the sandboxes' states.
    if (this.provider.current.sandboxes.status === 'idle') void this.provider.refresh();
  }

  private async loadHistory(): Promise<void> {
    try {
      const { events, skipped } = await this.helper.request(AuditRecent, { limit: 500 });
      if (skipped) this.out.warn(`${skipped} audit line(s) could not be read`);
      const fresh = this.log.add(events, { live: false });
      if (fresh.length) this.panel.post({ type: 'add', events: fresh });
    } catch (e) {
      this.history = undefined; // try again next time
      this.out.warn(`could not read the audit logs: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private postAll(): void {
    const focus = this.focusOnReady;
    this.focusOnReady = undefined;
    this.panel.post({ type: 'init', events: [...this.log.events], ...sandboxesNow(this.provider.current), ...(focus ? { focus } : {}) });
  }

  private async onWebviewMessage(m: { type: 'action'; action: AlertAction; container: string; id: string } | { type: 'openAudit'; container: string; id: string }): Promise<void> {
    try {
      if (m.type === 'action') {
        await this.act(m.action, m.container);
        return;
      }
      const { path, line } = await this.helper.request(AuditLocate, { container: m.container, id: m.id });
      const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(path));
      const at = new vscode.Range(line - 1, 0, line - 1, doc.lineAt(line - 1).text.length);
      await vscode.window.showTextDocument(doc, { selection: at, preview: true, viewColumn: vscode.ViewColumn.Beside });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      this.out.error(`alert view: ${message}`);
      void vscode.window.showErrorMessage(`COI: ${message}`);
    }
  }

  private seen(): void {
    if (this.log.markSeen()) this.changed();
  }

  /** The unseen counts moved: tree and status bar. */
  private changed(): void {
    const bySandbox = this.log.unseenBySandbox();
    this.provider.apply({ type: 'alerts-changed', alerts: bySandbox });
    const s = unseenStatus(bySandbox);
    if (!s) {
      this.status.hide();
      return;
    }
    this.status.text = s.text;
    this.status.tooltip = s.tooltip;
    this.status.backgroundColor = new vscode.ThemeColor(s.worst === 'warning' ? 'statusBarItem.warningBackground' : 'statusBarItem.errorBackground');
    this.status.show();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }
}

/** What the view needs of each sandbox for its buttons; `listed`: a sandbox not in the list is gone. */
export function sandboxesNow(s: ModelState): { sandboxes: SandboxesNow; listed: boolean } {
  const out: SandboxesNow = {};
  for (const [name, sb] of Object.entries(s.sandboxes.byName)) {
    const snaps = s.snapshots[name];
    out[name] = { exists: true, state: sb.state, slot: sb.slot, ...(snaps?.kind === 'ready' ? { snapshots: snaps.list.length } : {}) };
  }
  return { sandboxes: out, listed: s.sandboxes.status === 'ready' || s.sandboxes.status === 'loading' };
}

function toDisposable(d: { dispose(): void }): vscode.Disposable {
  return { dispose: () => d.dispose() };
}
