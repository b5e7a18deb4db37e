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
import { CoiError, ErrorCodes } from '../errors';
import { GUARD_CAPABILITIES, GuardAllowIdmap, GuardSecureSandbox, GuardSecureSandboxResult } from '../protocol/methods';
import type { SnapshotService } from '../snapshot/service';
import { settingsFromConfig } from './from-config';
import { guardPool } from '../pool/access';
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
  const settings = settingsFromConfig(loaded, d.env);
  for (const w of settings.networkWarnings ?? []) d.warn(w);
  return managerWith(d, settings);
}

const SECURE_TIMEOUT_MS = 90_000;

/**
 * guard/secureSandbox over a fresh connection. Any failure stops the launch:
 * no guard, a guard too old to fence networks, or rules it could not apply.
 */
export async function secureWithGuard(socketPath: string, name: string): Promise<GuardSecureSandboxResult> {
  const g = new GuardClient({ socketPath });
  const remedy = { title: 'Start the guard', shell: 'sudo coi guard start', command: 'coi.setup' };
  try {
    try {
      await g.connect({ timeoutMs: 3_000 });
    } catch (e) {
      throw new CoiError(ErrorCodes.GUARD_UNREACHABLE, `cannot start ${name}: the COI guard must fence its network first, and ${(e as Error).message}`, { remedy });
    }
    const info = await g.info();
    if (!info.capabilities.includes(GUARD_CAPABILITIES.network)) {
      throw new CoiError(ErrorCodes.GUARD_UNREACHABLE, `cannot start ${name}: the running guard (${info.guard.version}, pid ${info.guard.pid}) cannot fence networks`, {
        remedy: { title: 'Restart the guard with this version', shell: 'sudo coi guard stop && sudo coi guard start' },
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CoiError(ErrorCodes.TIMEOUT, `the guard did not fence ${name} within ${SECURE_TIMEOUT_MS / 1000} s`, { remedy: { title: 'See the guard log', shell: 'sudo tail /var/log/coi-guard.log' } })), SECURE_TIMEOUT_MS);
    });
    try {
      return await Promise.race([g.request(GuardSecureSandbox, { name }), timeout]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    g.close();
  }
}

/** A manager with settings made by the caller (the health check's temporary sandbox). */
export function managerWith(d: FactoryDeps, settings: SandboxSettings): SandboxManager {
  return new SandboxManager(settings, {
    incus: d.incus,
    log: d.log,
    host: hostIdentity(d.env),
    ...(d.progress ? { progress: d.progress } : {}),
    secureNetwork: (name) => secureWithGuard(guardSocketPath(d.env), name),
    warn: d.warn,
    ...(settings.poolSize ? { pool: guardPool(guardSocketPath(d.env), settings.poolSize, d.log) } : {}),
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
  // Required here: launches (coi run, coi shell) load this module and never need the snapshot service.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SnapshotService: Service } = require('../snapshot/service') as typeof import('../snapshot/service');
  return new Service({ incus: d.incus, log: d.log, sandboxes: managerByName(d), launcher: (workspace) => launchManager(d, workspace, {}) });
}
