/** Shared by the sandbox commands: the manager for this invocation and target resolution. */
import { CoiError, ErrorCodes } from '../errors';
import { FactoryDeps, launchManager as launch, managerByName } from '../sandbox/factory';
import type { SandboxInfo } from '../sandbox/labels';
import { hostIdentity, resolveWorkspace, SandboxManager } from '../sandbox/manager';
import { workspaceHash } from '../sandbox/naming';
import type { SettingsFlags } from '../sandbox/settings';
import type { CliContext } from './command';

function deps(ctx: CliContext, quiet: boolean): FactoryDeps {
  return {
    env: ctx.env,
    incus: ctx.incus(),
    log: ctx.log,
    warn: (m) => ctx.err(`coi: warning: ${m}\n`),
    ...(quiet ? {} : { progress: (m: string) => ctx.err(`coi: ${m}\n`) }),
  };
}

/** For commands that act on sandboxes by name: no workspace config is read. */
export function managerFor(ctx: CliContext, flags: SettingsFlags = {}, opts: { quiet?: boolean } = {}): SandboxManager {
  return managerByName(deps(ctx, opts.quiet ?? false), flags);
}

/** For launches: the workspace's effective configuration; trust warnings are printed, never silent. */
export function launchManager(ctx: CliContext, workspace: string, flags: SettingsFlags, opts: { quiet?: boolean } = {}): Promise<SandboxManager> {
  return launch(deps(ctx, opts.quiet ?? false), workspace, flags);
}

/**
 * The sandboxes a command acts on: the names given, every sandbox with --all,
 * or else the one sandbox of the current workspace (an error listing the
 * choices when there are several or none).
 */
export async function resolveTargets(mgr: SandboxManager, ctx: CliContext, names: string[], opts: { all?: boolean; workspace?: string; filter?: (s: SandboxInfo) => boolean } = {}): Promise<string[]> {
  if (names.length > 0) return names;
  const all = (await mgr.list()).filter(opts.filter ?? (() => true));
  if (opts.all) return all.map((s) => s.name);
  const ws = resolveWorkspace(opts.workspace ?? process.cwd(), hostIdentity(ctx.env).home);
  const here = all.filter((s) => s.workspace === ws);
  if (here.length === 1) return [here[0]!.name];
  const hint = here.length === 0 ? all : here;
  throw new CoiError(
    ErrorCodes.INVALID_INPUT,
    here.length === 0
      ? `no sandbox for ${ws} (workspace ${workspaceHash(ws)})${hint.length ? `; sandboxes: ${hint.map((s) => s.name).join(', ')}` : ''}`
      : `several sandboxes for ${ws}: ${here.map((s) => s.name).join(', ')}; name one`,
  );
}
