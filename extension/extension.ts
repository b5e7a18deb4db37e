/**
 * The extension's front door. Activation is cheap: it registers the view, the
 * commands and the status bar item, and starts nothing. The helper process is
 * spawned by the first request, i.e. when the Sandboxes view is first shown or a
 * command needs it. VS Code (1.74+) derives the activation events from the
 * contributed view and commands, so package.json lists none.
 */
import * as vscode from 'vscode';
import { HelperInfo } from '../helper/protocol/methods';
import { HelperProcess, helperSpawnArgs } from './helper/process';
import { setupCommandLine } from './setup';
import { SandboxesProvider } from './tree/provider';
import { describeVersions, Remedy, statusBarOf } from './tree/model';

let helper: HelperProcess | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('COI', { log: true });
  context.subscriptions.push(log);
  log.info(`COI ${context.extension.packageJSON.version as string} activated`);

  const helperJs = context.asAbsolutePath('dist/helper.js');
  const proc = new HelperProcess({ ...helperSpawnArgs(helperJs, process.execPath, process.env), cwd: context.extensionPath, log });
  helper = proc;
  context.subscriptions.push(
    { dispose: () => void proc.dispose() },
    toDisposable(
      proc.onDidChangeState((s) => {
        if (s.kind !== 'failed') return;
        void vscode.window.showErrorMessage(`COI: ${s.reason}, so it is no longer restarted. Last exit: ${s.lastExit}.`, 'Restart Helper', 'Show Log').then((pick) => {
          if (pick === 'Restart Helper') void vscode.commands.executeCommand('coi.restartHelper');
          else if (pick === 'Show Log') log.show();
        });
      }),
    ),
  );

  const provider = new SandboxesProvider(proc, log);
  const view = vscode.window.createTreeView('coi.sandboxes', { treeDataProvider: provider });
  context.subscriptions.push(provider, view);

  const status = vscode.window.createStatusBarItem('coi.status', vscode.StatusBarAlignment.Left, 10);
  status.name = 'COI';
  status.command = 'coi.sandboxes.focus';
  const renderStatus = () => {
    const s = statusBarOf(provider.current);
    status.text = s.text;
    status.tooltip = s.tooltip;
    status.backgroundColor = s.background ? new vscode.ThemeColor(s.background) : undefined;
  };
  renderStatus();
  status.show();
  context.subscriptions.push(status, provider.onDidChangeState(renderStatus));

  const command = (id: string, fn: (...args: unknown[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, (...args: unknown[]) => runReportingErrors(id, log, () => fn(...args))));

  command('coi.showHelperInfo', async () => {
    const info = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'COI: asking the helper' }, () => proc.request(HelperInfo, {}));
    provider.accept(info);
    const text = describeVersions(info);
    if (info.incus.reachable && info.guard.reachable) {
      void vscode.window.showInformationMessage(text);
    } else {
      const pick = await vscode.window.showWarningMessage(text, 'Set Up This Machine');
      if (pick) await vscode.commands.executeCommand('coi.setup');
    }
  });

  command('coi.setup', () => {
    const terminal = vscode.window.createTerminal({ name: 'COI Setup', iconPath: new vscode.ThemeIcon('tools') });
    terminal.show();
    terminal.sendText(setupCommandLine({ execPath: process.execPath, helperJs, isRoot: process.getuid?.() === 0 }));
  });

  command('coi.refresh', () => provider.refresh());

  command('coi.restartHelper', async () => {
    await proc.restart();
    await provider.refresh();
  });

  command('coi.showLog', () => log.show());

  command('coi.openWorkspace', () => {
    void vscode.window.showInformationMessage('COI: opening a workspace in a sandbox is not available yet.');
  });
}

export async function deactivate(): Promise<void> {
  const h = helper;
  helper = undefined;
  await h?.dispose();
}

/** A failed command says what went wrong, and offers the fix when the error carries one. */
async function runReportingErrors(id: string, log: vscode.LogOutputChannel, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const remedy = (e as { remedy?: Remedy }).remedy;
    log.error(`${id}: ${message}`);
    const actions = remedy?.command ? [remedy.title, 'Show Log'] : ['Show Log'];
    const pick = await vscode.window.showErrorMessage(`COI: ${message}`, ...actions);
    if (pick === 'Show Log') log.show();
    else if (pick && remedy?.command) await vscode.commands.executeCommand(remedy.command);
  }
}

function toDisposable(d: { dispose(): void }): vscode.Disposable {
  return { dispose: () => d.dispose() };
}
