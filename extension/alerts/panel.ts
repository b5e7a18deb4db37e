/**
 * The alert webview panel: one per window, revealed again when it exists.
 * Its page comes from html.ts (strict CSP, our script by nonce through
 * asWebviewUri, local resources limited to dist/); its content is whatever
 * the controller posts. It is not kept alive while hidden: the controller
 * holds every event and posts them again when the page reloads ("ready"),
 * and the page keeps its filters and open evidence with setState.
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';
import { alertsHtml, makeNonce } from './html';
import { FromWebview, parseFromWebview, ToWebview } from './messages';

export const ALERTS_VIEW_TYPE = 'coi.alerts';

export class AlertsPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly handlers: {
      /** The page (re)loaded: post everything. */
      onReady(): void;
      onMessage(m: Exclude<FromWebview, { type: 'ready' }>): void;
      /** Shown or hidden, focused or not. */
      onViewState(visible: boolean): void;
      log(message: string): void;
    },
  ) {}

  get visible(): boolean {
    return this.panel?.visible ?? false;
  }

  /** Opens the panel, or brings it to the front. */
  show(): void {
    if (this.panel) {
      this.panel.reveal(undefined, false);
      return;
    }
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    const panel = vscode.window.createWebviewPanel(ALERTS_VIEW_TYPE, 'COI Threat Alerts', { viewColumn: vscode.ViewColumn.Active, preserveFocus: false }, {
      enableScripts: true,
      localResourceRoots: [dist],
      enableFindWidget: true,
    });
    panel.iconPath = vscode.Uri.joinPath(this.extensionUri, 'media', 'coi.svg');
    this.panel = panel;
    this.ready = false;
    panel.webview.html = alertsHtml({
      cspSource: panel.webview.cspSource,
      scriptUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, 'webview.js')).toString(),
      codiconsUri: panel.webview.asWebviewUri(vscode.Uri.joinPath(dist, 'codicons', 'codicon.css')).toString(),
      nonce: makeNonce((n) => randomBytes(n)),
    });
    panel.webview.onDidReceiveMessage(
      (raw: unknown) => {
        const m = parseFromWebview(raw);
        if (!m) {
          this.handlers.log(`ignored a malformed message from the alert view: ${JSON.stringify(raw)?.slice(0, 200)}`);
          return;
        }
        if (m.type === 'ready') {
          this.ready = true;
          this.handlers.onReady();
        } else this.handlers.onMessage(m);
      },
      undefined,
      this.disposables,
    );
    panel.onDidChangeViewState(
      (e) => {
        // Hidden, the page is unloaded; shown again, it reloads and says "ready".
        if (!e.webviewPanel.visible) this.ready = false;
        this.handlers.onViewState(e.webviewPanel.visible);
      },
      undefined,
      this.disposables,
    );
    panel.onDidDispose(() => {
      this.panel = undefined;
      this.ready = false;
    }, undefined, this.disposables);
  }

  /** Posts to the page if it is loaded; otherwise it gets everything on "ready". */
  post(m: ToWebview): void {
    if (!this.panel || !this.ready) return;
    void this.panel.webview.postMessage(m);
  }

  dispose(): void {
    this.panel?.dispose();
    for (const d of this.disposables) d.dispose();
  }
}
