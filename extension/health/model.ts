/**
 * "Check Health": from the helper's health report to what the editor shows —
 * a summary with buttons, one quick pick item per problem whose fix-it runs
 * the check's remedy (an editor command such as "Set Up This Machine", or the
 * remedy's command line in a terminal, `coi` being the bundled helper). Pure:
 * the unit tests feed it reports of the shape `coi health --format json` prints.
 */
import type { HealthCheck, HealthReport } from '../../helper/health/schema';
import { helperCommandLine, HelperBinary } from '../commands/args';

export type HealthAction =
  /** An editor command named by the remedy, e.g. coi.setup. */
  | { kind: 'command'; title: string; command: string }
  /**
   * The remedy's command line in a terminal. `execute` is false when the line
   * holds a placeholder (<container>): it is typed for the user to complete, not run.
   */
  | { kind: 'terminal'; title: string; commandLine: string; execute: boolean }
  /** Nothing to run (e.g. "boot a newer kernel"): the report says what to do. */
  | { kind: 'report'; title: string };

export interface HealthProblem {
  key: string;
  status: 'failed' | 'warning';
  /** Quick pick label, with the status's icon. */
  label: string;
  description: string;
  detail: string;
  action: HealthAction;
}

export const SHOW_REPORT = 'Show Report';
export const FIX_PROBLEMS = 'Fix Problems…';

/** Editor commands a remedy may name: only ours. */
const COMMAND = /^coi\.[A-Za-z.]+$/;

/**
 * A remedy's shell line as this editor runs it: each `coi` (after `sudo` or
 * environment assignments, at the start of each command of the line) becomes
 * the bundled helper; as root, `sudo` is dropped.
 */
export function remedyCommandLine(shell: string, bin: HelperBinary, isRoot: boolean): string {
  const helper = helperCommandLine(bin, []);
  const start = String.raw`(^|&&\s*|\|\|\s*|;\s*)`;
  let line = shell.replace(new RegExp(`${start}((?:[A-Z_][A-Z0-9_]*=\\S*\\s+)*)(sudo\\s+)?coi(?=\\s|$)`, 'g'), (_m, lead: string, envs: string, sudo: string | undefined) => `${lead}${sudo && !isRoot ? 'sudo ' : ''}${envs}${helper}`);
  if (isRoot) line = line.replace(new RegExp(`${start}sudo\\s+`, 'g'), '$1');
  return line;
}

export function actionOf(c: Pick<HealthCheck, 'remedy'>, bin: HelperBinary, isRoot: boolean): HealthAction {
  const r = c.remedy;
  if (!r) return { kind: 'report', title: SHOW_REPORT };
  if (r.command && COMMAND.test(r.command)) return { kind: 'command', title: r.title, command: r.command };
  // A remedy of several lines is a snippet to paste into a file, not a command.
  if (r.shell && !r.shell.includes('\n')) return { kind: 'terminal', title: r.title, commandLine: remedyCommandLine(r.shell, bin, isRoot), execute: !/<[A-Za-z][\w-]*>/.test(r.shell) };
  return { kind: 'report', title: SHOW_REPORT };
}

/** The checks that are not ok, failed ones first, each with its fix-it. */
export function problemsOf(report: HealthReport, bin: HelperBinary, isRoot: boolean): HealthProblem[] {
  const out: HealthProblem[] = [];
  for (const status of ['failed', 'warning'] as const) {
    for (const [key, c] of Object.entries(report.checks)) {
      if (c.status !== status) continue;
      const action = actionOf(c, bin, isRoot);
      const how = c.remedy ? `${c.remedy.title}${c.remedy.shell && !c.remedy.shell.includes('\n') ? `: ${c.remedy.shell}` : ''}` : 'see the report';
      out.push({
        key,
        status,
        label: `${status === 'failed' ? '$(error)' : '$(warning)'} ${c.name}`,
        description: action.kind === 'report' ? 'no automatic fix' : action.title,
        detail: `${c.message}. Fix: ${how}${c.fixable ? ' (coi health --fix does this)' : ''}`,
        action,
      });
    }
  }
  return out;
}

export interface HealthSummary {
  severity: 'info' | 'warning' | 'error';
  message: string;
  /** The notification's buttons, in order. */
  buttons: string[];
}

/**
 * The notification: the verdict and counts; with one problem its fix-it is a
 * button of its own, with more they are offered in a quick pick.
 */
export function summaryOf(report: HealthReport, problems: HealthProblem[]): HealthSummary {
  const s = report.summary;
  const counts = `${s.passed} ok, ${s.warnings} warning${s.warnings === 1 ? '' : 's'}, ${s.failed} failed`;
  const severity = report.status === 'healthy' ? 'info' : report.status === 'degraded' ? 'warning' : 'error';
  if (problems.length === 0) return { severity, message: `COI: this machine is healthy (${counts}).`, buttons: [SHOW_REPORT] };
  const first = problems[0]!;
  if (problems.length === 1) {
    const buttons = first.action.kind === 'report' ? [SHOW_REPORT] : [first.action.title, SHOW_REPORT];
    return { severity, message: `COI health: ${report.status}: ${first.detail}`, buttons };
  }
  const names = problems.map((p) => p.label.replace(/^\$\([\w-]+\) /, '')).join(', ');
  return { severity, message: `COI health: ${report.status} (${counts}): ${names}.`, buttons: [FIX_PROBLEMS, SHOW_REPORT] };
}

/** What a button of the notification does. */
export function buttonAction(button: string | undefined, problems: HealthProblem[]): { kind: 'pick' } | { kind: 'report' } | { kind: 'fix'; problem: HealthProblem } | undefined {
  if (button === undefined) return undefined;
  if (button === FIX_PROBLEMS) return { kind: 'pick' };
  if (button === SHOW_REPORT) return { kind: 'report' };
  const p = problems.length === 1 && problems[0]!.action.title === button ? problems[0] : undefined;
  return p ? { kind: 'fix', problem: p } : undefined;
}
