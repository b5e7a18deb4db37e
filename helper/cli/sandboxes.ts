/** Shared by the sandbox commands: the manager for this invocation and target resolution. */
import { CoiError, ErrorCodes } from '../errors';
import { GuardClient } from '../guard/client';
import { guardSocketPath } from '../guard/paths';
import { GuardAllowIdmap } from '../protocol/methods';
import type { SandboxInfo } from '../sandbox/labels';
import { ConfigPatch, loadConfig } from '../config';
import { settingsFromConfig } from '../sandbox/from-config';
import { hostIdentity, resolveWorkspace, SandboxManager, SandboxSettings } from '../sandbox/manager';
import { workspaceHash } from '../sandbox/naming';
import { defaultSettings, SettingsFlags } from '../sandbox/settings';
import type { CliContext } from './command';

/** For commands that act on sandboxes by name: no workspace config is read. */
export function managerFor(ctx: CliContext, flags: SettingsFlags = {}, opts: { quiet?: boolean } = {}): SandboxManager {
  return managerWith(ctx, defaultSettings(ctx.env, flags), opts);
}

/**
 * For launches: the workspace's effective configuration (user, project,
 * profile, COI_* variables, flags). Trust warnings are printed, never silent.
 */
export async function launchManager(ctx: CliContext, workspace: string, flags: SettingsFlags, opts: { quiet?: boolean } = {}): Promise<SandboxManager> {
  const host = hostIdentity(ctx.env);
  const real = resolveWorkspace(workspace, host.home);
  const patch: ConfigPatch = {};
  if (flags.image !== undefined || flags.persistent !== undefined) {
    patch.container = { ...(flags.image !== undefined ? { image: flags.image } : {}), ...(flags.persistent !== undefined ? { persistent: flags.persistent } : {}) };
  }
  if (flags.tool !== undefined) patch.tool = { name: flags.tool as NonNullable<ConfigPatch['tool']>['name'] };
  const loaded = await loadConfig({ home: host.home, workspace: real, env: ctx.env, flags: patch, ...(flags.profile ? { profile: flags.profile } : {}) });
  for (const w of loaded.warnings) ctx.err(`coi: warning: ${w.message}${w.remedy ? `\n  fix: ${w.remedy.title}${w.remedy.shell ? `: ${w.remedy.shell}` : ''}` : ''}\n`);
  return managerWith(ctx, settingsFromConfig(loaded, ctx.env), opts);
}

function managerWith(ctx: CliContext, settings: SandboxSettings, opts: { quiet?: boolean }): SandboxManager {
  const host = hostIdentity(ctx.env);
  return new SandboxManager(settings, {
    incus: ctx.incus(),
    log: ctx.log,
    host,
    progress: opts.quiet ? () => undefined : (m) => ctx.err(`coi: ${m}\n`),
    allowIdmap: async (uid, gid) => {
      const g = new GuardClient({ socketPath: guardSocketPath(ctx.env) });
      try {
        await g.connect({ timeoutMs: 3_000 });
        await g.request(GuardAllowIdmap, { uid, gid });
      } finally {
        g.close();
      }
    },
  });
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
