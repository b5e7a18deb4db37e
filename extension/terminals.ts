/**
 * The agent terminals: one per slot, named "<workspace folder> · slot N", each
 * running the bundled helper's `attach NAME` (a real pty on the container's
 * tmux session). Closing one ends only the attach: tmux detaches and the agent
 * keeps running. They are transient (VS Code does not revive them itself);
 * after a window reload `restore` opens them again for the running slots.
 */
import * as vscode from 'vscode';
import { attachTerminalSpec, HelperBinary, terminalsToRestore } from './commands/args';
import type { Folder, Sandbox } from './tree/model';

export function attachTerminalOptions(bin: HelperBinary, sb: Sandbox, folders: Folder[]): vscode.TerminalOptions {
  const spec = attachTerminalSpec(bin, sb, folders);
  return {
    ...spec,
    iconPath: new vscode.ThemeIcon('vm'),
    isTransient: true,
  };
}

export class AgentTerminals implements vscode.Disposable {
  private readonly byName = new Map<string, vscode.Terminal>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly bin: HelperBinary,
    private readonly folders: () => Folder[],
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.window.onDidCloseTerminal((t) => {
        for (const [name, term] of this.byName) {
          if (term === t) {
            this.byName.delete(name);
            this.log.info(`agent terminal of ${name} closed (${t.exitStatus ? `exit ${t.exitStatus.code ?? '?'}` : 'by the user'}); the agent keeps running unless the sandbox ended`);
          }
        }
      }),
    );
  }

  /** The open agent terminal of a sandbox, if any (ours, or one with its name, e.g. from the terminal profile). */
  find(sb: Sandbox): vscode.Terminal | undefined {
    const mine = this.byName.get(sb.name);
    if (mine && mine.exitStatus === undefined) return mine;
    const name = attachTerminalSpec(this.bin, sb, this.folders()).name;
    return vscode.window.terminals.find((t) => t.name === name && t.exitStatus === undefined);
  }

  /** Shows the sandbox's agent terminal, opening it when none is open. */
  open(sb: Sandbox, opts: { show: boolean; preserveFocus?: boolean } = { show: true }): vscode.Terminal {
    let term = this.find(sb);
    if (!term) {
      const options = attachTerminalOptions(this.bin, sb, this.folders());
      this.log.info(`opening agent terminal "${options.name}" on ${sb.name}`);
      term = vscode.window.createTerminal(options);
      this.byName.set(sb.name, term);
    }
    if (opts.show) term.show(opts.preserveFocus ?? false);
    return term;
  }

  /** Opens the missing agent terminals of this window's running slots (after a reload), without taking the focus. */
  restore(sandboxes: Sandbox[]): number {
    const missing = terminalsToRestore(
      sandboxes.filter((sb) => !this.byName.has(sb.name)),
      this.folders(),
      vscode.window.terminals.filter((t) => t.exitStatus === undefined).map((t) => t.name),
    );
    // The first one comes to the front of the panel (a reload may have put a fresh shell there).
    missing.forEach((sb, i) => this.open(sb, { show: i === 0, preserveFocus: true }));
    if (missing.length) this.log.info(`restored ${missing.length} agent terminal(s): ${missing.map((s) => s.name).join(', ')}`);
    return missing.length;
  }

  /**
   * The sandbox stopped or is gone: its agent terminal has nothing left to show
   * (and `coi attach` may not notice a container deleted under it), so close it.
   */
  ended(name: string, why: string): void {
    const term = this.byName.get(name);
    if (!term) return;
    this.byName.delete(name);
    this.log.info(`closing the agent terminal of ${name}: ${why}`);
    term.dispose();
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
