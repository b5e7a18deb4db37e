/**
 * The settings a sandbox launch needs, from built-in defaults, the environment
 * and command flags. (The configuration layer feeds the same structure from
 * config files and profiles.)
 */
import { SETUP_NAMES } from '../setup/names';
import type { SandboxSettings } from './manager';
import { DEFAULT_PREFIX, validatePrefix } from './naming';
import { DEFAULT_NETWORK, guardScopeOf } from './network-label';
import { DEFAULT_PROTECTED_PATHS } from './protected';

export interface SettingsFlags {
  persistent?: boolean;
  image?: string;
  tool?: string;
  profile?: string;
}

export function defaultSettings(env: NodeJS.ProcessEnv, flags: SettingsFlags = {}): SandboxSettings {
  return {
    prefix: validatePrefix(env.COI_CONTAINER_PREFIX || DEFAULT_PREFIX),
    image: flags.image ?? env.COI_IMAGE ?? SETUP_NAMES.baseImage,
    pool: SETUP_NAMES.pool,
    bridge: SETUP_NAMES.bridge,
    profile: flags.profile ?? 'default',
    persistent: flags.persistent ?? false,
    tool: flags.tool ?? env.COI_TOOL ?? 'claude',
    protectedPaths: [...DEFAULT_PROTECTED_PATHS],
    forwardEnv: [],
    environment: {},
    mounts: [],
    sshForwardAgent: false,
    nesting: false,
    readyTimeoutSec: 30,
    shutdownTimeoutSec: 60,
    codeUid: 1000,
    codeGid: 1000,
    disableShift: false,
    agent: { permissionMode: 'bypass', autoContext: true, network: { mode: 'restricted', allowedDomains: [] }, limits: {}, profileContexts: [] },
    network: DEFAULT_NETWORK,
    ...guardScopeOf(env),
  };
}
