/**
 * "Check Health": runs the helper's health checks (those of `coi health`),
 * writes the full report to the "COI Health" output channel and shows the
 * verdict with fix-it buttons; several problems are offered in a quick pick,
 * each running its remedy. What each check maps to is decided in model.ts.
 */
import * as vscode from 'vscode';
import { renderText } from '../../helper/health/render';
import { HealthCheck } from '../../helper/protocol/methods';
import type { HelperBinary } from '../commands/args';
import type { HelperProcess } from '../helper/process';
import type { Folder } from '../tree/model';
import { buttonAction, HealthAction, HealthProblem, problemsOf, summaryOf } from './model';

export class HealthChecks implements vscode.Disposable {
  private output: vscode.OutputChannel | undefined;

  constructor(
    private readonly proc: HelperProcess,
    private readonly bin: HelperBinary,
  ) {}

  /**
   * Made on the first check, so that activation adds nothing to the Output view.
   * Plain text: the report is a table, timestamps on each line would only blur it.
   */
  private get channel(): vscode.OutputChannel {
    return (this.output ??= vscode.window.createOutputChannel('COI Health'));
  }

  dispose(): void {
    this.output?.dispose();
  }

  async run(folder: Folder | undefined): Promise<void> {
    const { report } = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'COI: checking this machine (with a temporary sandbox)…' },
      () => this.proc.request(HealthCheck, { ...(folder ? { workspace: folder.path } : {}), live: true }),
    );
    this.channel.clear();
    this.channel.append(`COI health report, ${report.timestamp}${folder ? `, for ${folder.path}` : ''}\n\n${renderText(report, true)}`);
    const isRoot = process.getuid?.() === 0;
    const problems = problemsOf(report, this.bin, isRoot);
    const s = summaryOf(report, problems);
    const show = s.severity === 'error' ? vscode.window.showErrorMessage : s.severity === 'warning' ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
    const next = buttonAction(await show(s.message, ...s.buttons), problems);
    if (!next) return;
    if (next.kind === 'report') this.channel.show();
    else if (next.kind === 'fix') await this.apply(next.problem.action);
    else await this.pick(problems);
  }

  private async pick(problems: HealthProblem[]): Promise<void> {
    const chosen = await vscode.window.showQuickPick(
      problems.map((p) => ({ label: p.label, description: p.description, detail: p.detail, problem: p })),
      { title: 'COI: Health Problems', placeHolder: 'Pick a problem to run its fix', matchOnDescription: true, matchOnDetail: true },
    );
    if (chosen) await this.apply(chosen.problem.action);
  }

  private async apply(a: HealthAction): Promise<void> {
    switch (a.kind) {
      case 'command':
        await vscode.commands.executeCommand(a.command);
        return;
      case 'terminal': {
        const t = vscode.window.createTerminal({ name: `COI Fix: ${a.title}`, iconPath: new vscode.ThemeIcon('wrench') });
        t.show();
        t.sendText(a.commandLine, a.execute);
        return;
      }
      case 'report':
        this.channel.show();
    }
  }
}
