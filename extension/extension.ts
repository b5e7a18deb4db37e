/**
 * The extension's front door. Activation is cheap: it registers the view, the
 * commands, the terminal profile and the status bar item, and starts nothing.
 * The helper process is spawned by the first request, i.e. when the Sandboxes
 * view is first shown or a command needs it. VS Code (1.74+) derives the
 * activation events from the contributed view, commands and terminal profile,
 * so package.json lists none.
 *
 * What each command sends, to which sandbox, is decided by the pure functions
 * of commands/args.ts; this file only asks the user and shows the outcome.
 */
import * as vscode from 'vscode';
import { HelperInfo, SandboxChanged, SandboxList, SandboxOpen, SandboxOptions, SandboxOptionsResult, SandboxShutdown, SnapshotList } from '../helper/protocol/methods';
import {
  choicesKey,
  confirmation,
  describeChoices,
  HelperBinary,
  OpenChoices,
  openParams,
  persistentPick,
  PickList,
  profilePick,
  profileTarget,
  readChoices,
  runCommandLine,
  SANDBOX_COMMANDS,
  sandboxCall,
  SandboxCommand,
  sandboxNameOf,
  sandboxPickItems,
  SNAPSHOT_COMMANDS,
  snapshotCall,
  snapshotCreateCall,
  SnapshotCommand,
  snapshotOf,
  snapshotPickItems,
  slotPick,
  toolPick,
  validateSnapshotName,
  workspaceOf,
} from './commands/args';
import { registerAlerts } from './alerts';
import { ImageBuilds } from './build/command';
import { HealthChecks } from './health/command';
import { HelperProcess, helperSpawnArgs } from './helper/process';
import { setupCommandLine } from './setup';
import { AgentTerminals, attachTerminalOptions } from './terminals';
import { currentFolders, SandboxesProvider } from './tree/provider';
import { currentSandboxes, describeVersions, Folder, Remedy, Sandbox, statusBarOf } from './tree/model';

let helper: HelperProcess | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('COI', { log: true });
  context.subscriptions.push(log);
  log.info(`COI ${context.extension.packageJSON.version as string} activated`);

  const helperJs = context.asAbsolutePath('dist/helper.js');
  const bin: HelperBinary = { execPath: process.execPath, helperJs };
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
  const view = vscode.window.createTreeView('coi.sandboxes', { treeDataProvider: provider, showCollapseAll: true });
  const terminals = new AgentTerminals(bin, currentFolders, log);
  context.subscriptions.push(provider, view, terminals);
  registerAlerts(context, proc, provider, log);

  // ── status bar ──
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

  context.subscriptions.push(
    proc.onNotification(SandboxChanged, (n) => {
      if (!n.sandbox) terminals.ended(n.name, 'the sandbox was deleted');
      else if (n.sandbox.state === 'stopped') terminals.ended(n.name, 'the sandbox stopped');
    }),
  );

  // ── agent terminals after a window reload: once, on the first list of sandboxes ──
  let restored = false;
  context.subscriptions.push(
    provider.onDidChangeState((s) => {
      if (restored || s.sandboxes.status !== 'ready') return;
      restored = true;
      if (settings().get<boolean>('restoreTerminals', true)) terminals.restore(currentSandboxes(s));
    }),
  );

  const command = (id: string, fn: (...args: unknown[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, (...args: unknown[]) => runReportingErrors(id, log, () => fn(...args))));

  // ── helpers of the commands ──

  /** A fresh list (also shown in the tree): quick picks never offer what is gone. */
  const listSandboxes = async (): Promise<Sandbox[]> => {
    const { sandboxes } = await proc.request(SandboxList, {});
    provider.acceptSandboxes(sandboxes);
    return sandboxes;
  };

  /** The sandbox a command acts on: the tree node's, else one picked from those it applies to. */
  const sandboxFor = async (cmd: SandboxCommand, arg: unknown): Promise<Sandbox | undefined> => {
    const named = sandboxNameOf(arg);
    if (named) {
      const known = provider.current.sandboxes.byName[named];
      if (known) return known;
      return (await listSandboxes()).find((s) => s.name === named) ?? ({ name: named } as Sandbox);
    }
    const all = await listSandboxes();
    const items = sandboxPickItems(all, cmd, currentFolders());
    if (items.length === 0) {
      const pick = await vscode.window.showInformationMessage(`COI: ${SANDBOX_COMMANDS[cmd].none}`, 'Open Workspace in COI Sandbox');
      if (pick) await vscode.commands.executeCommand('coi.openWorkspace');
      return undefined;
    }
    const chosen = await pickFrom({ items, active: 0 }, { title: commandTitle(cmd), placeholder: SANDBOX_COMMANDS[cmd].placeholder });
    return chosen === undefined ? undefined : all.find((s) => s.name === chosen.value);
  };

  /** The snapshot a snapshot command acts on: the node's, else a slot then one of its snapshots. */
  const snapshotFor = async (cmd: SnapshotCommand, arg: unknown): Promise<{ sandbox: string; snapshot: string } | undefined> => {
    const given = snapshotOf(arg);
    if (given) return given;
    const sb = await sandboxFor('coi.snapshot.create', sandboxNameOf(arg) ?? undefined);
    if (!sb) return undefined;
    const { snapshots } = await proc.request(SnapshotList, { name: sb.name });
    provider.apply({ type: 'snapshots-listed', name: sb.name, snapshots });
    if (snapshots.length === 0) {
      void vscode.window.showInformationMessage(`COI: ${sb.name} has no snapshots.`);
      return undefined;
    }
    const chosen = await pickFrom({ items: snapshotPickItems(snapshots), active: 0 }, { title: commandTitle(cmd), placeholder: SNAPSHOT_COMMANDS[cmd].placeholder });
    return chosen === undefined ? undefined : { sandbox: sb.name, snapshot: chosen.value };
  };

  const folderFor = async (arg: unknown): Promise<Folder | undefined> => {
    const folders = currentFolders();
    const { folder, mustPick } = workspaceOf(arg, folders);
    if (folder) return folder;
    if (mustPick) {
      const f = await vscode.window.showWorkspaceFolderPick({ placeHolder: 'Which workspace folder?' });
      return f ? folders.find((x) => x.path === f.uri.fsPath) : undefined;
    }
    const pick = await vscode.window.showInformationMessage('COI: open a folder first; its sandbox shares exactly that folder.', 'Open Folder');
    if (pick) await vscode.commands.executeCommand('workbench.action.files.openFolder');
    return undefined;
  };

  const confirm = async (cmd: SandboxCommand | SnapshotCommand, sb: { name: string; slot?: number; persistent?: boolean }, snapshot?: string): Promise<boolean> => {
    const q = confirmation(cmd, sb, snapshot);
    if (!q) return true;
    return (await vscode.window.showWarningMessage(q.message, { modal: true, detail: q.detail }, q.button)) === q.button;
  };

  /** Opens a sandbox for the folder with these choices; undefined when cancelled (the sandbox is then shut down once up). */
  const openSandbox = async (folder: Folder, choices: OpenChoices): Promise<Sandbox | undefined> => {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `COI: opening ${folder.name} in a sandbox`, cancellable: true },
      async (progress, token) => {
        progress.report({ message: describeChoices(choices) });
        const opening = proc.request(SandboxOpen, openParams(folder.path, choices));
        // The launch cannot be stopped half-way; a cancel stops waiting and undoes it when it is done.
        const cancelled = new Promise<'cancelled'>((resolve) => token.onCancellationRequested(() => resolve('cancelled')));
        const first = await Promise.race([opening, cancelled]);
        if (first !== 'cancelled') return first;
        void opening.then(
          (r) => proc.request(SandboxShutdown, { name: r.sandbox.name }).then(() => log.info(`open of ${folder.name} cancelled: ${r.sandbox.name} shut down`)),
          (e: unknown) => log.info(`open of ${folder.name} cancelled, and it failed anyway: ${String(e)}`),
        );
        return undefined;
      },
    );
    if (!result) {
      void vscode.window.showInformationMessage(`COI: cancelled; the sandbox of ${folder.name} is shut down as soon as its launch ends.`);
      return undefined;
    }
    provider.apply({ type: 'sandbox-changed', name: result.sandbox.name, action: 'opened', sandbox: result.sandbox });
    for (const w of result.warnings) void vscode.window.showWarningMessage(`COI: ${w}`);
    return result.sandbox;
  };

  /** Shows a node in the view (when the view is open), expanding it if asked. Best effort. */
  const reveal = async (id: string, expand: boolean) => {
    const node = provider.node(id);
    if (!node || !view.visible) return;
    await Promise.resolve(view.reveal(node, { expand, select: false, focus: false })).catch((e: unknown) => log.debug(`reveal ${id}: ${String(e)}`));
  };

  // ── commands ──

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

  command('coi.openWorkspace', async (arg) => {
    const folder = await folderFor(arg);
    if (!folder) return;
    const options: SandboxOptionsResult = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: 'COI: reading the configuration' }, () =>
      proc.request(SandboxOptions, { workspace: folder.path }),
    );
    const remembered = readChoices(context.workspaceState.get(choicesKey(folder.path)));
    const title = `Open ${folder.name} in COI Sandbox`;
    const tool = await pickFrom(toolPick(options, remembered, settings().get<string>('defaultTool', '')), { title, placeholder: 'Which agent?', step: 1, totalSteps: 4 });
    if (!tool) return;
    const existing = currentSandboxes(provider.current).filter((sb) => sb.workspace === (folder.real ?? folder.path));
    const slot = await pickFrom(slotPick(existing, remembered), { title, placeholder: 'Which slot?', step: 2, totalSteps: 4 });
    if (!slot) return;
    const profile = await pickFrom(profilePick(options, remembered), { title, placeholder: 'Which profile?', step: 3, totalSteps: 4 });
    if (!profile) return;
    const persistent = await pickFrom(persistentPick(options, remembered), { title, placeholder: 'Keep it when it stops?', step: 4, totalSteps: 4 });
    if (!persistent) return;
    const choices: OpenChoices = {
      ...(tool.value !== undefined ? { tool: tool.value } : {}),
      ...(slot.value !== undefined ? { slot: slot.value } : {}),
      ...(profile.value !== undefined ? { profile: profile.value } : {}),
      ...(persistent.value !== undefined ? { persistent: persistent.value } : {}),
    };
    await context.workspaceState.update(choicesKey(folder.path), choices);
    const sb = await openSandbox(folder, choices);
    if (!sb) return;
    await reveal(`sandbox:${sb.name}`, false);
    if (settings().get<boolean>('openTerminalOnStart', true)) terminals.open(sb, { show: true });
  });

  command('coi.attach', async (arg) => {
    const sb = await sandboxFor('coi.attach', arg);
    if (sb) terminals.open(sb, { show: true });
  });

  command('coi.runCommand', async (arg) => {
    const folder = await folderFor(arg);
    if (!folder) return;
    const cmd = await vscode.window.showInputBox({
      title: `Run in a fresh sandbox of ${folder.name}`,
      prompt: 'A shell command; it runs in /workspace and the sandbox is deleted when it ends (workspace changes stay).',
      placeHolder: 'npm test',
      validateInput: (v) => (v.trim() ? undefined : 'Type a command'),
    });
    if (!cmd?.trim()) return;
    const terminal = vscode.window.createTerminal({ name: `COI run · ${folder.name}`, iconPath: new vscode.ThemeIcon('run'), cwd: folder.path });
    terminal.show();
    terminal.sendText(runCommandLine(bin, folder.path, cmd.trim()));
  });

  const lifecycle = (cmd: 'coi.shutdown' | 'coi.kill' | 'coi.persist' | 'coi.resume', verb: string, done: string) =>
    async (arg: unknown) => {
      const sb = await sandboxFor(cmd, arg);
      if (!sb || !(await confirm(cmd, sb))) return;
      const { def, params } = sandboxCall(cmd, sb.name);
      const which = sb.slot !== undefined ? `slot ${sb.slot}` : sb.name;
      const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `COI: ${verb} ${which}…` }, () => proc.request(def, params));
      const outcome = (result as { outcome?: string }).outcome;
      vscode.window.setStatusBarMessage(`COI: ${which} ${outcome ?? done}`, 5_000);
    };
  command('coi.shutdown', lifecycle('coi.shutdown', 'shutting down', 'shut down'));
  command('coi.kill', lifecycle('coi.kill', 'killing', 'killed'));
  command('coi.persist', lifecycle('coi.persist', 'making persistent', 'is now persistent'));
  command('coi.resume', lifecycle('coi.resume', 'resuming', 'resumed'));

  command('coi.snapshot.create', async (arg) => {
    const sb = await sandboxFor('coi.snapshot.create', arg);
    if (!sb) return;
    const name = await vscode.window.showInputBox({
      title: `Snapshot of slot ${sb.slot ?? '?'} (${sb.name})`,
      prompt: 'Name of the snapshot; leave empty for one with the date and time.',
      placeHolder: 'snap-YYYYMMDD-HHMMSS',
      validateInput: validateSnapshotName,
    });
    if (name === undefined) return;
    const { def, params } = snapshotCreateCall(sb.name, name);
    const { snapshot } = (await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `COI: snapshotting ${sb.name}…` }, () => proc.request(def, params))) as {
      snapshot: { name: string; createdAt: string; stateful: boolean };
    };
    if (provider.current.snapshots[sb.name]?.kind === 'ready') provider.apply({ type: 'snapshot-created', name: sb.name, snapshot });
    else await provider.loadSnapshots(sb.name);
    await reveal(`sandbox:${sb.name}`, true); // the slot expanded, so the snapshot shows
    vscode.window.setStatusBarMessage(`COI: snapshot ${snapshot.name} of ${sb.name} created`, 5_000);
  });

  const snapshotCommand = (cmd: SnapshotCommand, verb: string, done: string) =>
    async (arg: unknown) => {
      const target = await snapshotFor(cmd, arg);
      if (!target) return;
      const sb = provider.current.sandboxes.byName[target.sandbox] ?? { name: target.sandbox };
      if (!(await confirm(cmd, sb, target.snapshot))) return;
      const { def, params } = snapshotCall(cmd, target);
      const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `COI: ${verb} ${target.snapshot} of ${target.sandbox}…` }, () =>
        proc.request(def, params),
      );
      if (cmd === 'coi.snapshot.delete') provider.apply({ type: 'snapshot-deleted', name: target.sandbox, snapshot: target.snapshot });
      const branched = (result as { sandbox?: Sandbox }).sandbox;
      if (branched) {
        provider.apply({ type: 'sandbox-changed', name: branched.name, action: 'branched', sandbox: branched });
        if (settings().get<boolean>('openTerminalOnStart', true) && branched.state === 'running') terminals.open(branched, { show: true });
      }
      vscode.window.setStatusBarMessage(`COI: ${done} ${target.snapshot} of ${target.sandbox}`, 5_000);
    };
  command('coi.snapshot.restore', snapshotCommand('coi.snapshot.restore', 'restoring', 'restored'));
  command('coi.snapshot.delete', snapshotCommand('coi.snapshot.delete', 'deleting', 'deleted'));
  command('coi.snapshot.branch', snapshotCommand('coi.snapshot.branch', 'branching from', 'branched from'));

  const builds = new ImageBuilds(proc, log);
  context.subscriptions.push(builds);
  command('coi.build', async (arg) => {
    const folder = await folderFor(arg);
    if (folder) await builds.run(folder);
  });
  const health = new HealthChecks(proc, bin);
  context.subscriptions.push(health);
  command('coi.health', () => health.run(currentFolders()[0]));

  // ── the "COI Sandbox" terminal profile: attach to this workspace's sandbox, opening one if none runs ──
  context.subscriptions.push(
    vscode.window.registerTerminalProfileProvider('coi.sandbox', {
      provideTerminalProfile: async () => {
        const folders = currentFolders();
        const folder = folders[0];
        if (!folder) throw new Error('COI: open a folder first; its sandbox shares exactly that folder.');
        let sb = profileTarget(await listSandboxes(), folders);
        if (!sb) {
          sb = await openSandbox(folder, readChoices(context.workspaceState.get(choicesKey(folder.path))));
          if (!sb) throw new Error('COI: opening the sandbox was cancelled.');
        }
        return new vscode.TerminalProfile(attachTerminalOptions(bin, sb, folders));
      },
    }),
  );
}

export async function deactivate(): Promise<void> {
  const h = helper;
  helper = undefined;
  await h?.dispose();
}

function settings(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration('coi');
}

function commandTitle(id: string): string {
  const t = (vscode.extensions.getExtension('coi.coi-vscode')?.packageJSON as { contributes?: { commands?: { command: string; title: string }[] } } | undefined)?.contributes?.commands?.find(
    (c) => c.command === id,
  )?.title;
  return `COI: ${t ?? id}`;
}

/**
 * One quick pick step with the remembered choice active (Enter takes it).
 * Resolves to the picked item's value boxed, or undefined when dismissed.
 */
function pickFrom<V>(list: PickList<V>, opts: { title: string; placeholder: string; step?: number; totalSteps?: number }): Promise<{ value: V } | undefined> {
  return new Promise((resolve) => {
    const qp = vscode.window.createQuickPick<vscode.QuickPickItem & { value: V }>();
    qp.title = opts.title;
    qp.placeholder = opts.placeholder;
    if (opts.step !== undefined) qp.step = opts.step;
    if (opts.totalSteps !== undefined) qp.totalSteps = opts.totalSteps;
    qp.matchOnDescription = true;
    qp.items = list.items.map((i) => ({ label: i.label, value: i.value, ...(i.description ? { description: i.description } : {}), ...(i.detail ? { detail: i.detail } : {}) }));
    const active = qp.items[list.active];
    if (active) qp.activeItems = [active];
    let done = false;
    qp.onDidAccept(() => {
      const picked = qp.selectedItems[0] ?? qp.activeItems[0];
      if (!picked) return;
      done = true;
      resolve({ value: picked.value });
      qp.hide();
    });
    qp.onDidHide(() => {
      if (!done) resolve(undefined);
      qp.dispose();
    });
    qp.show();
  });
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
    const detail = remedy?.shell && !remedy.command ? ` Fix: ${remedy.title}: ${remedy.shell}` : '';
    const pick = await vscode.window.showErrorMessage(`COI: ${message}${detail}`, ...actions);
    if (pick === 'Show Log') log.show();
    else if (pick && remedy?.command) await vscode.commands.executeCommand(remedy.command);
  }
}

function toDisposable(d: { dispose(): void }): vscode.Disposable {
  return { dispose: () => d.dispose() };
}
