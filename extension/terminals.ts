/**
 * The agent terminals: one per slot, named "<workspace folder> · slot N", each
 * running the bundled helper's `attach NAME` (a real pty on the container's
 * tmux session). Closing one ends only the attach: tmux detaches and the agent
 * keeps running. They are transient (VS Code does not revive them itself);
 * after a window reload `restore` opens them again for the running slots.
 *
 * A terminal is recognised by what it runs (attach NAME), so those opened
 * through the "COI Sandbox" terminal profile count too.
 */
import * as vscode from 'vscode';
import { attachedSandbox, attachTerminalSpec, HelperBinary, terminalsToRestore } from './commands/args';
import type { Folder, Sandbox } from './tree/model';

export function attachTerminalOptions(bin: HelperBinary, sb: Sandbox, folders: Folder[]): vscode.TerminalOptions {
  return { ...attachTerminalSpec(bin, sb, folders), iconPath: new vscode.ThemeIcon('vm'), isTransient: true };
}

export class AgentTerminals implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly bin: HelperBinary,
    private readonly folders: () => Folder[],
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.window.onDidCloseTerminal((t) => {
        const name = this.sandboxOf(t);
        if (name) this.log.info(`agent terminal of ${name} closed (${t.exitStatus?.code !== undefined ? `exit ${t.exitStatus.code}` : 'by the user'}); closing it never stops the agent`);
      }),
    );
  }

  private sandboxOf(t: vscode.Terminal): string | undefined {
    return attachedSandbox(this.bin, t.creationOptions as vscode.TerminalOptions);
  }

  /** The open agent terminals of a sandbox. */
  terminalsOf(name: string): vscode.Terminal[] {
    return vscode.window.terminals.filter((t) => t.exitStatus === undefined && this.sandboxOf(t) === name);
  }

  /** Shows the sandbox's agent terminal, opening it when none is open. */
  open(sb: Sandbox, opts: { show: boolean; preserveFocus?: boolean } = { show: true }): vscode.Terminal {
    let term = this.terminalsOf(sb.name)[0];
    if (!term) {
      const options = attachTerminalOptions(this.bin, sb, this.folders());
      this.log.info(`opening agent terminal "${options.name}" on ${sb.name}`);
      term = vscode.window.createTerminal(options);
    }
    if (opts.show) term.show(opts.preserveFocus ?? false);
    return term;
  }

  /** Opens the missing agent terminals of this window's running slots (after a reload), without taking the focus. */
  restore(sandboxes: Sandbox[]): number {
    const attached = vscode.window.terminals.filter((t) => t.exitStatus === undefined).map((t) => this.sandboxOf(t)).filter((n): n is string => !!n);
    const missing = terminalsToRestore(sandboxes, this.folders(), attached);
    // The first one comes to the front of the panel (a reload may have put a fresh shell there).
    missing.forEach((sb, i) => this.open(sb, { show: i === 0, preserveFocus: true }));
    if (missing.length) this.log.info(`restored ${missing.length} agent terminal(s): ${missing.map((s) => s.name).join(', ')}`);
    return missing.length;
  }

  /**
   * The sandbox stopped or is gone: its agent terminals have nothing left to
   * show (and `coi attach` does not notice a container deleted under it), so close them.
   */
  ended(name: string, why: string): void {
    for (const term of this.terminalsOf(name)) {
      this.log.info(`closing the agent terminal "${term.name}": ${why}`);
      term.dispose();
    }
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
