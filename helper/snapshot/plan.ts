/**
 * What a restore will do, decided before anything is touched: pure, from the
 * sandbox and its snapshots, so the CLI's question, the extension's dialog
 * and the restore itself all say the same thing.
 */
import { CoiError, ErrorCodes, Remedy } from '../errors';
import type { SandboxInfo } from '../sandbox/labels';
import { WORKSPACE_MOUNT } from '../sandbox/spec';

export interface SnapshotSummary {
  name: string;
  createdAt: string;
  stateful: boolean;
}

export interface RestorePlan {
  sandbox: string;
  snapshot: string;
  snapshotCreatedAt: string;
  /** Set when the restore will not go ahead, with why and what to do. */
  refused?: { reason: string; remedy?: Remedy };
  /** True when the sandbox runs: it is stopped, restored and started again (its tool too). */
  restart: boolean;
  /** What the restore throws away, one sentence each. */
  lost: string[];
  /** What it keeps, one sentence each (the workspace first). */
  kept: string[];
}

export function restorePlan(sb: SandboxInfo, snapshots: readonly SnapshotSummary[], target: string): RestorePlan {
  const snap = snapshots.find((s) => s.name === target);
  if (!snap) {
    throw new CoiError(
      ErrorCodes.NOT_FOUND,
      `${sb.name} has no snapshot "${target}"${snapshots.length ? `; it has: ${snapshots.map((s) => s.name).join(', ')}` : '; it has none'}`,
      { remedy: { title: 'List its snapshots', shell: `coi snapshot list -c ${sb.name}` } },
    );
  }
  const plan: RestorePlan = {
    sandbox: sb.name,
    snapshot: snap.name,
    snapshotCreatedAt: snap.createdAt,
    restart: sb.state === 'running',
    lost: [`every change made in ${sb.name} outside ${WORKSPACE_MOUNT} since ${snap.name} was taken (${snap.createdAt}): files in /home/code, /tmp and elsewhere, installed packages, system settings`],
    kept: [
      `the workspace ${sb.workspace || '(unknown)'}: its files live on the host and are mounted at ${WORKSPACE_MOUNT}; a restore never touches them`,
      `the sandbox's name, slot and mode (${sb.persistent ? 'persistent' : 'ephemeral'})`,
    ],
  };
  if (plan.restart) {
    plan.lost.push(`the running session: ${sb.tool || 'the tool'} and every process in ${sb.name} are stopped (at once, not gracefully) and started again; whatever the agent kept only in memory is gone`);
  }
  const newer = snapshots.filter((s) => s.name !== snap.name && Date.parse(s.createdAt) > Date.parse(snap.createdAt)).map((s) => s.name);
  if (newer.length) plan.kept.push(`the snapshots taken after ${snap.name} (${newer.join(', ')}): you can still go forward to them`);
  const refuse = refusal(sb, snap);
  if (refuse) plan.refused = refuse;
  return plan;
}

function refusal(sb: SandboxInfo, snap: SnapshotSummary): RestorePlan['refused'] {
  if (sb.phase === 'creating') {
    return { reason: `${sb.name} is still being launched; restore it once its launch has finished` };
  }
  switch (sb.state) {
    case 'frozen':
      return {
        reason: `${sb.name} is frozen by the guard after an alert; restoring now would erase what the agent did before you reviewed it`,
        remedy: { title: 'Review the alert, then resume or kill it', shell: `coi resume ${sb.name}` },
      };
    case 'starting':
    case 'stopping':
      return { reason: `${sb.name} is ${sb.state}; try again in a moment` };
    case 'error':
      return { reason: `Incus reports ${sb.name} in an error state`, remedy: { title: 'Look at it', shell: `incus info ${sb.name} --show-log` } };
    default:
      break;
  }
  if (snap.stateful) {
    return { reason: `${snap.name} is a stateful snapshot (memory included); coi restores only stateless ones`, remedy: { title: 'Restore it with Incus itself', shell: `incus snapshot restore ${sb.name} ${snap.name} --stateful` } };
  }
  return undefined;
}

/** The plan as the lines a person reads before saying yes. */
export function describePlan(p: RestorePlan): string {
  const lines = [`Restoring ${p.sandbox} to ${p.snapshot} (${p.snapshotCreatedAt}).`, 'This is lost:', ...p.lost.map((l) => `  - ${l}`), 'This is kept:', ...p.kept.map((l) => `  - ${l}`)];
  if (p.restart) lines.push(`${p.sandbox} is running: it will be stopped, restored and started again, with its tool.`);
  return lines.join('\n') + '\n';
}
