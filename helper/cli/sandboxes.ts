/** Shared by the sandbox commands: the manager for this invocation and target resolution. */
import { CoiError, ErrorCodes } from '../errors';
import { GuardClient } from '../guard/client';
import { guardSocketPath } from '../guard/paths';
import { GuardAllowIdmap } from '../protocol/methods';
import type { SandboxInfo } from '../sandbox/labels';
import { hostIdentity, resolveWorkspace, SandboxManager } from '../sandbox/manager';
import { workspaceHash } from '../sandbox/naming';
import { defaultSettings, SettingsFlags } from '../sandbox/settings';
import type { CliContext } from './command';

export function managerFor(ctx: CliContext, flags: SettingsFlags = {}, opts: { quiet?: boolean } = {}): SandboxManager {
  const host = hostIdentity(ctx.env);
  return new SandboxManager(defaultSettings(ctx.env, flags), {
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
