/**
 * Building a SandboxManager for one request, the same way for the CLI and the
 * JSON-RPC server: by name (no workspace config), or for a launch (the
 * workspace's effective configuration, trust warnings reported).
 */
import { ConfigPatch, loadConfig } from '../config';
import { GuardClient } from '../guard/client';
import { guardSocketPath } from '../guard/paths';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { GuardAllowIdmap } from '../protocol/methods';
import { SnapshotService } from '../snapshot/service';
import { settingsFromConfig } from './from-config';
import { hostIdentity, resolveWorkspace, SandboxManager, SandboxSettings } from './manager';
import { defaultSettings, SettingsFlags } from './settings';

export interface FactoryDeps {
  env: NodeJS.ProcessEnv;
  incus: IncusClient;
  log: Log;
  warn: (message: string) => void;
  progress?: (message: string) => void;
}

export function managerByName(d: FactoryDeps, flags: SettingsFlags = {}): SandboxManager {
  return managerWith(d, defaultSettings(d.env, flags));
}

export async function launchManager(d: FactoryDeps, workspace: string, flags: SettingsFlags): Promise<SandboxManager> {
  const host = hostIdentity(d.env);
  const real = resolveWorkspace(workspace, host.home);
  const patch: ConfigPatch = {};
  if (flags.image !== undefined || flags.persistent !== undefined) {
    patch.container = { ...(flags.image !== undefined ? { image: flags.image } : {}), ...(flags.persistent !== undefined ? { persistent: flags.persistent } : {}) };
  }
  if (flags.tool !== undefined) patch.tool = { name: flags.tool as NonNullable<ConfigPatch['tool']>['name'] };
  const loaded = await loadConfig({ home: host.home, workspace: real, env: d.env, flags: patch, ...(flags.profile ? { profile: flags.profile } : {}) });
  for (const w of loaded.warnings) d.warn(`${w.message}${w.remedy ? `\n  fix: ${w.remedy.title}${w.remedy.shell ? `: ${w.remedy.shell}` : ''}` : ''}`);
  return managerWith(d, settingsFromConfig(loaded, d.env));
}

/** A manager with settings made by the caller (the health check's temporary sandbox). */
export function managerWith(d: FactoryDeps, settings: SandboxSettings): SandboxManager {
  return new SandboxManager(settings, {
    incus: d.incus,
    log: d.log,
    host: hostIdentity(d.env),
    ...(d.progress ? { progress: d.progress } : {}),
    allowIdmap: async (uid, gid) => {
      const g = new GuardClient({ socketPath: guardSocketPath(d.env) });
      try {
        await g.connect({ timeoutMs: 3_000 });
        await g.request(GuardAllowIdmap, { uid, gid });
      } finally {
        g.close();
      }
    },
  });
}

/** Snapshots: sandboxes found by name; a restored session or a branch runs with its workspace's configuration. */
export function snapshotService(d: FactoryDeps): SnapshotService {
  return new SnapshotService({ incus: d.incus, log: d.log, sandboxes: managerByName(d), launcher: (workspace) => launchManager(d, workspace, {}) });
}
