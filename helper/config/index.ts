/**
 * The configuration layer's public face, for the sandbox, guard and
 * extension-facing code: load the effective configuration of a workspace,
 * map limits to Incus, manage trust and profiles.
 */
export { loadConfig, listProfiles, listTrusted, readConfigInputs, trustWorkspace, untrustWorkspace } from './loader';
export type { LoadOptions, ProfileSummary, TrustResult } from './loader';
export { resolveConfig } from './resolve';
export type { ConfigInputs, ConfigWarning, LoadedConfig, ResolvedProfile, TrustState, TrustStatus } from './resolve';
export { configSchema, defaults, parseDuration, profileSchema } from './schema';
export type { Config, ConfigPatch, Limits, NetworkMode } from './schema';
export { limitsToIncus, runtimeLimits } from './limits';
export type { IncusLimits, RuntimeLimits } from './limits';
export { configJsonSchema } from './jsonschema';
export { describeSource } from './provenance';
export type { LayerKind, Source } from './provenance';
export type { Provenance, ProvenanceMap } from './merge';
export type { ProfileContext } from './profiles';
export type { PrivilegedSetting } from './trust';
export { ENV_KEYS } from './env';
