/**
 * SandboxSettings from the effective configuration: the one mapping between
 * config keys and what a launch does.
 */
import * as path from 'node:path';
import { LoadedConfig, limitsToIncus } from '../config';
import { policyFromConfig } from '../guard/monitor/policy';
import { SETUP_NAMES } from '../setup/names';
import type { SandboxSettings } from './manager';
import { DEFAULT_PREFIX, validatePrefix } from './naming';
import { protectedPathList } from './protected';

export function settingsFromConfig(loaded: LoadedConfig, env: NodeJS.ProcessEnv): SandboxSettings {
  const c = loaded.config;
  const writable = new Set(c.security.writable_paths);
  const protectedPaths = c.security.disable_protection
    ? []
    : protectedPathList({ paths: c.security.protected_paths, additional: c.security.additional_protected_paths, writableHooks: c.git.writable_hooks }).filter((p) => !writable.has(p));
  return {
    prefix: validatePrefix(env.COI_CONTAINER_PREFIX || DEFAULT_PREFIX),
    image: c.container.image,
    pool: c.container.storage_pool || SETUP_NAMES.pool,
    bridge: SETUP_NAMES.bridge,
    profile: loaded.profile.name,
    persistent: c.container.persistent,
    tool: c.tool.name,
    protectedPaths,
    forwardEnv: c.defaults.forward_env,
    environment: c.defaults.environment,
    mounts: c.mounts.map((m) => ({ host: path.resolve(loaded.workspace, m.host), container: m.container, readonly: m.readonly })),
    sshForwardAgent: c.ssh.forward_agent,
    nesting: c.container.docker,
    readyTimeoutSec: c.container.ready_timeout,
    shutdownTimeoutSec: c.container.shutdown_timeout,
    codeUid: c.incus.code_uid,
    codeGid: c.incus.code_uid,
    disableShift: c.incus.disable_shift,
    limits: limitsToIncus(c.limits),
    monitor: policyFromConfig(c.monitoring),
  };
}
