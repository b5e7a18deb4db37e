/**
 * `coi snapshot create|list|restore|delete|info|branch`: checkpoints of a
 * sandbox, rollback, and branching an experiment into a new slot. Thin front
 * door onto SnapshotService; the sandbox is `-c NAME`, else $COI_CONTAINER,
 * else the only sandbox of this workspace.
 */
import { CoiError, ErrorCodes } from '../../errors';
import { snapshotService } from '../../sandbox/factory';
import { hostIdentity, resolveWorkspace } from '../../sandbox/manager';
import { describePlan } from '../../snapshot/plan';
import { resolveContainer } from '../../snapshot/resolve';
import type { SnapshotDetails, SnapshotService } from '../../snapshot/service';
import { CliContext, Command, formatOption, parseFlags } from '../command';
import { confirm } from '../confirm';
import { attachTerminal } from '../terminal';
import { managerFor } from '../sandboxes';

const usage = [
  'coi snapshot create [NAME] [-c SANDBOX]',
  '       coi snapshot list [--all] [--format text|json] [-c SANDBOX]',
  '       coi snapshot restore NAME [-f] [--format text|json] [-c SANDBOX]',
  '       coi snapshot delete NAME|--all [-f] [-c SANDBOX]',
  '       coi snapshot info NAME [--format text|json] [-c SANDBOX]',
  '       coi snapshot branch NAME [--background] [--format text|json] [-c SANDBOX]',
  '  The sandbox: -c SANDBOX, else $COI_CONTAINER, else the only sandbox of this workspace (-w PATH, default the current directory).',
  '  Snapshots hold the sandbox, not the workspace: workspace files live on the host and a restore never touches them.',
].join('\n');

const common = {
  container: { type: 'string', short: 'c' },
  workspace: { type: 'string', short: 'w' },
  format: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const snapshotCommand: Command = {
  name: 'snapshot',
  summary: 'Checkpoint a sandbox, roll it back, or branch a snapshot into a new slot',
  usage,
  async run(args, ctx) {
    const [sub, ...rest] = args;
    const svc = snapshotService({
      env: ctx.env,
      incus: ctx.incus(),
      log: ctx.log,
      warn: (m) => ctx.err(`coi: warning: ${m}\n`),
      progress: (m) => ctx.err(`coi: ${m}\n`),
    });
    switch (sub) {
      case 'create':
        return create(rest, ctx, svc);
      case 'list':
        return list(rest, ctx, svc);
      case 'restore':
        return restore(rest, ctx, svc);
      case 'delete':
        return remove(rest, ctx, svc);
      case 'info':
        return info(rest, ctx, svc);
      case 'branch':
        return branch(rest, ctx, svc);
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `${sub ? `unknown snapshot action "${sub}"` : 'snapshot needs an action'}\nusage: ${usage}`);
    }
  },
};

const cmd = { name: 'snapshot', usage };

/** The sandbox a snapshot command acts on. */
async function target(ctx: CliContext, values: { container?: string | undefined; workspace?: string | undefined }): Promise<string> {
  if (values.container) return values.container;
  if (ctx.env.COI_CONTAINER) return ctx.env.COI_CONTAINER;
  let workspace: string | undefined;
  try {
    workspace = resolveWorkspace(values.workspace ?? process.cwd(), hostIdentity(ctx.env).home);
  } catch {
    workspace = undefined;
  }
  return resolveContainer({ workspace, sandboxes: await managerFor(ctx, {}, { quiet: true }).list() }).name;
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `${what}\nusage: ${usage}`);
  return positionals[0]!;
}

function fmt(values: { format?: string | undefined; json?: boolean | undefined }): 'text' | 'json' {
  return values.json ? 'json' : formatOption(cmd, values.format);
}

function line(s: SnapshotDetails): string {
  return `${s.name}  ${s.createdAt}${s.auto ? '  (automatic)' : ''}${s.stateful ? '  stateful' : ''}`;
}

async function create(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values, positionals } = parseFlags(cmd, args, common, true);
  if (positionals.length > 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `snapshot create takes at most one name\nusage: ${usage}`);
  const name = await target(ctx, values);
  const snap = await svc.create(name, positionals[0]);
  if (fmt(values) === 'json') ctx.out(JSON.stringify({ snapshot: snap }, null, 2) + '\n');
  else ctx.out(`${name}: snapshot ${snap.name} taken (${snap.createdAt})\n`);
  return 0;
}

async function list(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values } = parseFlags(cmd, args, { ...common, all: { type: 'boolean', short: 'a' } });
  const snaps = values.all ? await svc.listAll() : await svc.list(await target(ctx, values));
  if (fmt(values) === 'json') {
    ctx.out(JSON.stringify({ snapshots: snaps }, null, 2) + '\n');
    return 0;
  }
  if (snaps.length === 0) {
    ctx.out('no snapshots (take one with: coi snapshot create)\n');
    return 0;
  }
  let last = '';
  for (const s of snaps) {
    if (values.all && s.sandbox !== last) ctx.out(`${s.sandbox}:\n`);
    last = s.sandbox;
    ctx.out(`${values.all ? '  ' : ''}${line(s)}\n`);
  }
  return 0;
}

async function restore(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values, positionals } = parseFlags(cmd, args, { ...common, force: { type: 'boolean', short: 'f' } }, true);
  const snapshot = one(positionals, 'snapshot restore needs the snapshot name');
  const name = await target(ctx, values);
  const plan = await svc.plan(name, snapshot);
  if (plan.refused) {
    throw new CoiError(ErrorCodes.NOT_PERMITTED, `not restoring ${name}: ${plan.refused.reason}`, plan.refused.remedy ? { remedy: plan.refused.remedy } : {});
  }
  ctx.err(describePlan(plan));
  if (!values.force && !(await confirm(ctx, `Restore ${name} to ${snapshot}?`))) {
    ctx.err('coi: not restored (answer y, or pass -f)\n');
    return 1;
  }
  const outcome = await svc.restore(name, snapshot);
  if (fmt(values) === 'json') ctx.out(JSON.stringify(outcome, null, 2) + '\n');
  else {
    ctx.out(
      outcome.restarted
        ? `${name}: restored to ${snapshot} and started again with its tool (coi attach ${name})\n`
        : `${name}: restored to ${snapshot}; it is ${outcome.sandbox.state}${outcome.sandbox.state === 'stopped' ? ' (coi shell restarts it)' : ''}\n`,
    );
  }
  return 0;
}

async function remove(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values, positionals } = parseFlags(cmd, args, { ...common, all: { type: 'boolean', short: 'a' }, force: { type: 'boolean', short: 'f' } }, true);
  if (values.all === (positionals.length > 0) || positionals.length > 1) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `snapshot delete takes one name, or --all\nusage: ${usage}`);
  }
  const name = await target(ctx, values);
  if (values.all) {
    const snaps = await svc.list(name);
    if (snaps.length === 0) {
      ctx.out(`${name} has no snapshots\n`);
      return 0;
    }
    if (!values.force && !(await confirm(ctx, `Delete all ${snaps.length} snapshots of ${name} (${snaps.map((s) => s.name).join(', ')})? This cannot be undone.`))) {
      ctx.err('coi: nothing deleted (answer y, or pass -f)\n');
      return 1;
    }
    for (const s of await svc.deleteAll(name)) ctx.out(`${name}: deleted snapshot ${s}\n`);
    return 0;
  }
  const snapshot = positionals[0]!;
  await svc.info(name, snapshot);
  if (!values.force && !(await confirm(ctx, `Delete snapshot ${snapshot} of ${name}? This cannot be undone.`))) {
    ctx.err('coi: not deleted (answer y, or pass -f)\n');
    return 1;
  }
  await svc.delete(name, snapshot);
  ctx.out(`${name}: deleted snapshot ${snapshot}\n`);
  return 0;
}

async function info(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values, positionals } = parseFlags(cmd, args, common, true);
  const snapshot = one(positionals, 'snapshot info needs the snapshot name');
  const s = await svc.info(await target(ctx, values), snapshot);
  if (fmt(values) === 'json') {
    ctx.out(JSON.stringify({ snapshot: s }, null, 2) + '\n');
    return 0;
  }
  ctx.out(
    [
      `snapshot:  ${s.name}${s.auto ? ' (automatic checkpoint)' : ''}`,
      `sandbox:   ${s.sandbox}`,
      `created:   ${s.createdAt}`,
      `stateful:  ${s.stateful ? 'yes (memory included)' : 'no'}`,
      `size:      ${s.size !== undefined ? formatBytes(s.size) : 'not reported by this storage driver'}`,
      ...(s.expiresAt ? [`expires:   ${s.expiresAt}`] : []),
      '',
    ].join('\n'),
  );
  return 0;
}

async function branch(args: string[], ctx: CliContext, svc: SnapshotService): Promise<number> {
  const { values, positionals } = parseFlags(cmd, args, { ...common, background: { type: 'boolean' } }, true);
  const snapshot = one(positionals, 'snapshot branch needs the snapshot name');
  const sb = await svc.branch(await target(ctx, values), snapshot);
  if (values.background) {
    if (fmt(values) === 'json') ctx.out(JSON.stringify(sb, null, 2) + '\n');
    else ctx.out(`${sb.name}\n`);
    return 0;
  }
  ctx.err(`coi: attached to ${sb.name} (slot ${sb.slot}, branched from ${snapshot}); detach with Ctrl-b d\n`);
  return attachTerminal(managerFor(ctx), sb.name, ctx);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
