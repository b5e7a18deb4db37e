/**
 * The alerts feature's front door: one call from activate() wires the
 * controller (notifications, tree counts, status bar, the alert view) and the
 * coi.showAlerts command.
 */
import * as vscode from 'vscode';
import type { HelperProcess } from '../helper/process';
import type { SandboxesProvider } from '../tree/provider';
import { AlertsController } from './controller';

export function registerAlerts(context: vscode.ExtensionContext, helper: HelperProcess, provider: SandboxesProvider, log: vscode.LogOutputChannel): AlertsController {
  const controller = new AlertsController(context.extensionUri, helper, provider, log);
  const command = (id: string, fn: (...args: unknown[]) => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  // An event id (from a notification or another command) scrolls to that event.
  command('coi.showAlerts', (arg) => controller.show(typeof arg === 'string' ? arg : undefined));
  context.subscriptions.push(controller);
  return controller;
}
