/**
 * SandboxSettings from the effective configuration: the one mapping between
 * config keys and what a launch does.
 */
import * as path from 'node:path';
import { Config, LoadedConfig, limitsToIncus, runtimeLimits } from '../config';
import type { RuntimeLabel } from './labels';
import { policyFromConfig } from '../guard/monitor/policy';
import { SETUP_NAMES } from '../setup/names';
import type { SandboxSettings } from './manager';
import { DEFAULT_PREFIX, validatePrefix } from './naming';
import { guardScopeOf, networkLabelFromConfig } from './network-label';
import { protectedPathList } from './protected';

export function settingsFromConfig(loaded: LoadedConfig, env: NodeJS.ProcessEnv): SandboxSettings {
  const c = loaded.config;
  const writable = new Set(c.security.writable_paths);
  const protectedPaths = c.security.disable_protection
    ? []
    : protectedPathList({ paths: c.security.protected_paths, additional: c.security.additional_protected_paths, writableHooks: c.git.writable_hooks }).filter((p) => !writable.has(p));
  const network = networkLabelFromConfig(c.network);
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
    ...runtimeOf(c.limits),
    agent: {
      permissionMode: c.tool.permission_mode,
      autoContext: c.tool.auto_context,
      ...(c.tool.binary ? { binary: c.tool.binary } : {}),
      ...(c.tool.name === 'custom'
        ? {
            customArgs: c.tool.custom.args,
            // Unset resume_args means "resume with the launch arguments", not "with none".
            ...(c.tool.custom.resume_args.length ? { customResumeArgs: c.tool.custom.resume_args } : {}),
            stateDirs: c.tool.custom.state_dirs,
          }
        : {}),
      ...(c.tool.claude.model ? { model: c.tool.claude.model } : {}),
      network: { mode: c.network.mode, allowedDomains: c.network.allowed_domains },
      limits: {
        ...(c.limits.cpu.count ? { cpu: c.limits.cpu.count } : {}),
        ...(c.limits.memory.limit ? { memory: c.limits.memory.limit } : {}),
        ...(c.limits.runtime.max_duration ? { maxDuration: c.limits.runtime.max_duration } : {}),
        ...(c.limits.runtime.max_processes ? { maxProcesses: c.limits.runtime.max_processes } : {}),
      },
      profileContexts: loaded.profile.context.map((x) => ({ profile: x.profile, text: x.text })),
    },
    snapshots: { auto: c.snapshots.auto, keep: c.snapshots.keep },
    poolSize: c.pool.size,
    network: network.label,
    networkWarnings: network.warnings,
    ...guardScopeOf(env),
    monitor: policyFromConfig(c.monitoring),
  };
}

function runtimeOf(limits: Config['limits']): { runtime?: RuntimeLabel } {
  const r = runtimeLimits(limits);
  return r.maxDurationMs ? { runtime: { maxDurationMs: r.maxDurationMs, autoStop: r.autoStop, stopGraceful: r.stopGraceful } } : {};
}
