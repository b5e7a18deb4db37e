/**
 * "Build Image": asks what to build, starts the build in the helper and shows
 * it as a cancellable progress notification, its log in the "COI Build"
 * output channel. Cancel sends build/cancel; the helper removes the temporary
 * container and moves no alias, and the notification stays until it says so.
 * What each note means is decided in model.ts; this file only renders.
 */
import * as vscode from 'vscode';
import { BuildCancel, BuildFinished, BuildProgress, BuildStart } from '../../helper/protocol/methods';
import type { HelperProcess } from '../helper/process';
import type { Folder } from '../tree/model';
import {
  BuildChoice,
  BuildFinishedNote,
  BuildFollower,
  BuildProgressText,
  BuildStartParams,
  buildPick,
  customBuildParams,
  logLineOf,
  outcomeOf,
  validateImageName,
  workspaceBuildParams,
} from './model';

export class ImageBuilds implements vscode.Disposable {
  private output: vscode.LogOutputChannel | undefined;

  constructor(
    private readonly proc: HelperProcess,
    private readonly log: vscode.LogOutputChannel,
  ) {}

  /** Made on the first build, so that activation adds nothing to the Output view. */
  private get channel(): vscode.LogOutputChannel {
    return (this.output ??= vscode.window.createOutputChannel('COI Build', { log: true }));
  }

  dispose(): void {
    this.output?.dispose();
  }

  /** The command: what to build for this folder, then the build. */
  async run(folder: Folder): Promise<void> {
    const pick = buildPick(folder.name);
    const chosen = await vscode.window.showQuickPick(
      pick.items.map((i) => ({ label: i.label, ...(i.description ? { description: i.description } : {}), ...(i.detail ? { detail: i.detail } : {}), value: i.value })),
      { title: 'COI: Build Image', placeHolder: 'What to build?' },
    );
    if (!chosen) return;
    const params = await this.paramsFor(chosen.value, folder);
    if (params) await this.follow(params);
  }

  private async paramsFor(choice: BuildChoice, folder: Folder): Promise<BuildStartParams | undefined> {
    if (choice.kind === 'workspace') return workspaceBuildParams(folder.path, choice.force);
    const name = await vscode.window.showInputBox({ title: 'COI: Custom Image (1/3)', prompt: 'Name of the image', placeHolder: 'coi-myproject', validateInput: validateImageName });
    if (name === undefined) return undefined;
    const files = await vscode.window.showOpenDialog({ title: 'COI: Custom Image (2/3): the build script', canSelectFiles: true, canSelectFolders: false, canSelectMany: false, defaultUri: vscode.Uri.file(folder.path), openLabel: 'Use This Script' });
    const script = files?.[0]?.fsPath;
    if (!script) return undefined;
    const base = await vscode.window.showInputBox({ title: 'COI: Custom Image (3/3)', prompt: 'The image to build on (an alias, or remote:alias)', value: 'coi' });
    if (base === undefined) return undefined;
    return customBuildParams(name, script, base);
  }

  /** Starts the build and follows it to its end; resolves once the helper says it ended. */
  private async follow(params: BuildStartParams): Promise<void> {
    const channel = this.channel;
    channel.show(true);
    channel.info(`── build of ${params.kind === 'custom' ? `custom image ${params.name}` : `the image of ${params.workspace}`}${params.force ? ' (from scratch)' : ''}`);
    const text = new BuildProgressText();
    let report: (message: string) => void = () => undefined;
    let settle!: { resolve(n: BuildFinishedNote): void; reject(e: Error): void };
    const ended = new Promise<BuildFinishedNote>((resolve, reject) => (settle = { resolve, reject }));
    ended.catch(() => undefined); // a helper that dies before build/start answers rejects it unawaited
    const follower = new BuildFollower({
      progress: (n) => {
        const line = logLineOf(n);
        if (line !== undefined) channel.info(line);
        report(text.accept(n));
      },
      finished: (n) => settle.resolve(n),
    });
    const subs = [
      this.proc.onNotification(BuildProgress, (n) => follower.progress(n)),
      this.proc.onNotification(BuildFinished, (n) => follower.finish(n)),
      this.proc.onDidChangeState((s) => {
        // The helper's watchdog cleans up after a build whose helper died.
        if (s.kind !== 'running' && !follower.finished) settle.reject(new Error('the COI helper stopped during the build; the build was abandoned and its temporary container is removed'));
      }),
    ];
    let cancelRequested = false;
    const cancel = () => {
      const buildId = follower.buildId;
      if (!buildId) return; // asked before the build had an id: sent once it has one
      channel.warn(`cancel requested: build ${buildId}`);
      this.proc.request(BuildCancel, { buildId }).then(
        (r) => {
          if (!r.cancelled) channel.info(`build ${buildId} had already ended`);
        },
        (e: unknown) => this.log.error(`build/cancel ${buildId}: ${String(e)}`),
      );
    };
    try {
      const finished = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: 'COI: Building image', cancellable: true },
        async (progress, token) => {
          report = (message) => progress.report({ message });
          token.onCancellationRequested(() => {
            cancelRequested = true;
            report('cancelling: removing the temporary container…');
            cancel();
          });
          const started = await this.proc.request(BuildStart, params);
          channel.info(`build ${started.buildId}; its log file: ${started.log}`);
          follower.started(started.buildId);
          if (cancelRequested) cancel();
          return ended;
        },
      );
      const o = outcomeOf(finished);
      if (o.severity === 'error') channel.error(o.message);
      else if (o.severity === 'warning') channel.warn(o.message);
      else channel.info(o.message);
      const show = o.severity === 'error' ? vscode.window.showErrorMessage : o.severity === 'warning' ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
      if ((await show(o.message, 'Show Build Log')) === 'Show Build Log') channel.show();
    } finally {
      for (const s of subs) s.dispose();
    }
  }
}
