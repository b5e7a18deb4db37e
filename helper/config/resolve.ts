/**
 * From the texts of the configuration files (and the environment, flags and
 * trust store) to the effective configuration, with the layer of every value
 * and the warnings for what was held back. No I/O here except `realpath`,
 * which comes in with the inputs; loader.ts reads the files.
 *
 * Layers, lowest first: built-in defaults, ~/.coi/config.toml,
 * ./.coi/config.toml, $COI_CONFIG, the selected profile, COI_* variables,
 * command flags. Each file is validated whole before anything is merged, so
 * a broken file fails the load instead of half-applying.
 */
import { relative } from 'node:path';
import { CoiError, ErrorCodes, type Remedy } from '../errors';
import { configError, problemsFromIssues, validateLayer } from './diagnostics';
import { envPatch, envVarFor } from './env';
import { cloneMerged, emptyMerged, Merged, mergeInto, MergeMode, ProvenanceMap, stripDeletionMarkers } from './merge';
import { builtinProfiles, profileChain, ProfileContext, ProfileDef, profileRegistry, ProfileScope } from './profiles';
import type { LayerKind, Source } from './provenance';
import { Config, ConfigPatch, configSchema, crossFieldProblems, defaults, PROFILE_NAME, profileSchema } from './schema';
import { formatPath, KeyIndex, KeyPath, locate, parseToml } from './toml';
import { classifyProjectPatch, PrivilegedSetting, TrustContext, trustHash, withoutPrivileged } from './trust';
import type { TrustStore } from './trust-store';

export interface TextFile {
  path: string;
  text: string;
}

export interface ProfileSource {
  name: string;
  scope: Exclude<ProfileScope, 'builtin'>;
  file: string;
  text: string;
  context?: TextFile;
}

export interface ConfigInputs {
  home: string;
  /** Real (symlink-free) absolute path of the workspace. */
  workspace: string;
  env: Readonly<Record<string, string | undefined>>;
  flags?: ConfigPatch;
  /** --profile; else defaults.profile; else the built-in "default". */
  profile?: string;
  user?: TextFile;
  project?: TextFile;
  coiConfig?: TextFile;
  profiles: ProfileSource[];
  trustStore: TrustStore;
  /** Why the trust store could not be used, if it could not. */
  trustStoreProblem?: string;
  realpath(p: string): string;
}

export interface ConfigWarning {
  code: 'untrusted-setting' | 'untrusted-summary' | 'trust-all' | 'trust-store';
  message: string;
  file?: string;
  line?: number;
  column?: number;
  key?: string;
  remedy?: Remedy;
}

export type TrustStatus =
  /** The project sets nothing privileged. */
  | 'not-needed'
  /** Pinned by `coi trust` with this exact set. */
  | 'trusted'
  /** Never trusted. */
  | 'untrusted'
  /** Trusted once, but the privileged settings changed since. */
  | 'changed'
  /** COI_TRUST_ALL=1. */
  | 'trust-all';

export interface TrustState {
  status: TrustStatus;
  /** Pin of the project's privileged settings (absent when there are none). */
  sha256?: string;
  /** Every privileged setting of the project (its config and all its profiles). */
  settings: PrivilegedSetting[];
  /** Whether they were applied. */
  applied: boolean;
}

export interface ResolvedProfile {
  name: string;
  chain: Array<{ name: string; scope: ProfileScope; file?: string }>;
  /** CONTEXT.md of the profiles of the chain, root first. */
  context: ProfileContext[];
}

export interface LoadedConfig {
  config: Config;
  /** Leaf key (`network.mode`, `defaults.environment.FOO`, `mounts`) → who set its value. */
  provenance: ProvenanceMap;
  warnings: ConfigWarning[];
  workspace: string;
  /** Configuration files read, lowest layer first. */
  files: string[];
  profile: ResolvedProfile;
  trust: TrustState;
}

interface FileLayer {
  kind: LayerKind;
  file: string;
  patch: ConfigPatch;
  index: KeyIndex;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** `[[mounts.default]]` is the Go tool's other spelling of `[[mounts]]`. */
function normalizeMounts(data: Record<string, unknown>, index: KeyIndex): void {
  const m = data.mounts;
  if (!isPlain(m) || Object.keys(m).length !== 1 || !Array.isArray(m.default)) return;
  data.mounts = m.default;
  for (const [k, pos] of [...index]) {
    if (k.startsWith('mounts.default[')) {
      const nk = `mounts${k.slice('mounts.default'.length)}`;
      if (!index.has(nk)) index.set(nk, pos);
    }
  }
}

function parseLayer(f: TextFile, kind: LayerKind): FileLayer {
  const { data, index } = parseToml(f.text, f.path);
  normalizeMounts(data, index);
  validateLayer(configSchema(), data, { label: f.path, index });
  // The written data, not the parsed output: defaults must not count as "set".
  return { kind, file: f.path, patch: data as ConfigPatch, index };
}

function parseProfile(src: ProfileSource): ProfileDef {
  if (!PROFILE_NAME.test(src.name)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `${src.file}: "${src.name}" is not a valid profile name (letters, digits, "_", "-", "."; up to 64)`, {
      remedy: { title: 'Rename the profile directory' },
    });
  }
  const { data, index } = parseToml(src.text, src.file);
  normalizeMounts(data, index);
  validateLayer(profileSchema(), data, { label: src.file, index });
  const { inherits, description, ...patch } = data as ConfigPatch & { inherits?: string; description?: string };
  const def: ProfileDef = { name: src.name, scope: src.scope, file: src.file, index, patch };
  if (inherits !== undefined) def.inherits = inherits;
  if (description !== undefined) def.description = description;
  if (src.context) def.context = { profile: src.name, file: src.context.path, text: src.context.text };
  return def;
}

function fileSource(l: { kind: LayerKind; file: string; index: KeyIndex }): (path: KeyPath) => Source {
  return (path) => ({ layer: l.kind, file: l.file, ...(locate(l.index, path) ?? {}) });
}

function profileSource(p: ProfileDef): (path: KeyPath) => Source {
  return (path) => {
    const s: Source = { layer: 'profile', profile: p.name };
    if (p.scope === 'builtin') s.builtin = true;
    if (p.file) {
      s.file = p.file;
      Object.assign(s, (p.index && locate(p.index, path)) ?? {});
    }
    return s;
  };
}

function merged(base: Merged, patch: object | undefined, sourceAt: (path: KeyPath) => Source, mode: MergeMode = 'layer'): Merged {
  const m = cloneMerged(base);
  if (patch) mergeInto(m, patch as Record<string, unknown>, sourceAt, mode);
  return m;
}

/** The full configuration of a merge state (defaults are always in the base). */
function toConfig(m: Merged): Config {
  const v = structuredClone(m.value);
  stripDeletionMarkers(v);
  return configSchema().parse(v);
}

function validatePatch(data: unknown, label: string, labelFor?: (path: KeyPath) => string | undefined): ConfigPatch {
  validateLayer(configSchema(), data, labelFor ? { label, labelFor } : { label });
  return data as ConfigPatch;
}

/**
 * Privileged settings of every project profile, each judged against the
 * configuration below the profile layer plus its own ancestors, with the
 * project's privileged settings always held back from that context so that
 * the result (and the pin) does not depend on whether trust was given.
 */
function classifyProjectProfiles(reg: ReadonlyMap<string, ProfileDef>, safeBelow: Merged, ctx: TrustContext): Map<ProfileDef, PrivilegedSetting[]> {
  const out = new Map<ProfileDef, PrivilegedSetting[]>();
  for (const leaf of reg.values()) {
    if (leaf.scope !== 'project' || out.has(leaf)) continue;
    const acc = emptyMerged();
    for (const p of profileChain(reg, leaf.name)) {
      const below = toConfig(merged(safeBelow, acc.value, () => ({ layer: 'profile' })));
      const patch = p.compute ? p.compute(below) : (p.patch ?? {});
      let items = out.get(p);
      if (!items) {
        items = p.scope === 'project' && p.file ? classifyProjectPatch(patch, below, ctx, { source: relative(ctx.workspace, p.file), file: p.file, ...(p.index ? { index: p.index } : {}) }) : [];
        out.set(p, items);
      }
      mergeInto(acc, withoutPrivileged(patch, items) as Record<string, unknown>, () => ({ layer: 'profile' }), 'inherit');
    }
  }
  return out;
}

function untrustedWarning(s: PrivilegedSetting): ConfigWarning {
  const at = s.line !== undefined ? `${s.file}:${s.line}:${s.column}` : s.file;
  const w: ConfigWarning = {
    code: 'untrusted-setting',
    message: `${at}: ignored ${s.key} = ${JSON.stringify(s.value)}: it ${s.reason}, and this project's configuration is not trusted`,
    file: s.file,
    key: s.key,
  };
  if (s.line !== undefined) Object.assign(w, { line: s.line, column: s.column });
  return w;
}

export function trustRemedy(workspace: string): Remedy {
  return { title: "Trust this project's configuration", shell: `coi trust --workspace ${shellQuote(workspace)}` };
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\-./~]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** All profiles (built-in and from files), each file validated; duplicates are an error. */
export function profilesOf(inp: Pick<ConfigInputs, 'profiles'>): Map<string, ProfileDef> {
  return profileRegistry([...builtinProfiles(), ...inp.profiles.map(parseProfile)]);
}

export function resolveConfig(inp: ConfigInputs): LoadedConfig {
  const ctx: TrustContext = { workspace: inp.workspace, home: inp.home, realpath: inp.realpath };
  const user = inp.user && parseLayer(inp.user, 'user');
  const project = inp.project && parseLayer(inp.project, 'project');
  const coiConfig = inp.coiConfig && parseLayer(inp.coiConfig, 'coi-config');
  const reg = profilesOf(inp);
  const envData = envPatch(inp.env);
  const env = validatePatch(envData, 'environment', (path) => {
    const v = envVarFor(path);
    return v ? `environment variable ${v}` : undefined;
  });
  const flags = inp.flags ? validatePatch(structuredClone(inp.flags), 'command flags') : undefined;

  // ── trust: what would the project change that weakens isolation? ──
  const base = emptyMerged();
  mergeInto(base, defaults() as Record<string, unknown>, () => ({ layer: 'default' }), 'layer');
  const withUser = user ? merged(base, user.patch, fileSource(user)) : base;
  const projectItems = project
    ? classifyProjectPatch(project.patch, toConfig(withUser), ctx, { source: relative(inp.workspace, project.file), file: project.file, index: project.index })
    : [];
  const projectSafe = project && withoutPrivileged(project.patch, projectItems);
  let safeBelowProfiles = project ? merged(withUser, projectSafe, fileSource(project)) : withUser;
  if (coiConfig) safeBelowProfiles = merged(safeBelowProfiles, coiConfig.patch, fileSource(coiConfig));
  const profileItems = classifyProjectProfiles(reg, safeBelowProfiles, ctx);

  const all = [...projectItems, ...[...profileItems.values()].flat()];
  const sha256 = all.length ? trustHash(all) : undefined;
  const pinned = inp.trustStore.workspaces[inp.workspace];
  const status: TrustStatus = !sha256 ? 'not-needed' : inp.env.COI_TRUST_ALL === '1' ? 'trust-all' : pinned?.sha256 === sha256 ? 'trusted' : pinned ? 'changed' : 'untrusted';
  const applied = status === 'not-needed' || status === 'trusted' || status === 'trust-all';

  // ── the layers ──
  let m = project ? merged(withUser, applied ? project.patch : projectSafe, fileSource(project)) : withUser;
  if (coiConfig) m = merged(m, coiConfig.patch, fileSource(coiConfig));

  const envSource = (path: KeyPath): Source => {
    const v = envVarFor(path);
    return v ? { layer: 'env', env: v } : { layer: 'env' };
  };
  const probe = merged(merged(m, env, envSource), flags, () => ({ layer: 'flag' }));
  const profileName = inp.profile || ((probe.value.defaults as { profile?: string } | undefined)?.profile ?? '') || 'default';
  const chain = profileChain(reg, profileName);

  const held: PrivilegedSetting[] = applied ? [] : [...projectItems];
  const acc = emptyMerged();
  for (const p of chain) {
    const below = toConfig(merged(m, acc.value, () => ({ layer: 'profile' })));
    let patch = p.compute ? p.compute(below) : (p.patch ?? {});
    const items = profileItems.get(p) ?? [];
    if (!applied && items.length) {
      patch = withoutPrivileged(patch, items);
      held.push(...items);
    }
    mergeInto(acc, patch as Record<string, unknown>, profileSource(p), 'inherit');
  }
  m = merged(m, acc.value, (path) => acc.provenance[formatPath(path)] ?? { layer: 'profile', profile: profileName }, 'layer');
  m = merged(m, env, envSource);
  if (flags) m = merged(m, flags, () => ({ layer: 'flag' }));
  stripDeletionMarkers(m.value, m.provenance);

  const config = finalCheck(m);

  // ── warnings ──
  const warnings: ConfigWarning[] = [];
  if (inp.trustStoreProblem) warnings.push({ code: 'trust-store', message: inp.trustStoreProblem });
  if (status === 'trust-all' && all.length) {
    warnings.push({ code: 'trust-all', message: `COI_TRUST_ALL=1: applying ${all.length} project setting(s) that weaken isolation without asking` });
  }
  if (held.length) {
    warnings.push(...held.map(untrustedWarning));
    const why =
      status === 'changed'
        ? `the project's settings that weaken isolation changed since you trusted it on ${pinned?.trusted_at ?? '?'}`
        : 'project configuration is untrusted (a cloned repository may be hostile)';
    warnings.push({
      code: 'untrusted-summary',
      message: `${held.length} project setting(s) ignored because ${why}. Review them, then allow them with: coi trust --workspace ${shellQuote(inp.workspace)}`,
      remedy: trustRemedy(inp.workspace),
    });
  }

  const files = [user?.file, project?.file, coiConfig?.file, ...chain.map((p) => p.file)].filter((f): f is string => f !== undefined);
  return {
    config,
    provenance: m.provenance,
    warnings,
    workspace: inp.workspace,
    files,
    profile: {
      name: profileName,
      chain: chain.map((p) => ({ name: p.name, scope: p.scope, ...(p.file ? { file: p.file } : {}) })),
      context: chain.flatMap((p) => (p.context ? [p.context] : [])),
    },
    trust: { status, ...(sha256 ? { sha256 } : {}), settings: all, applied },
  };
}

/** Schema and cross-key checks on the merged result; problems point at the layer that set the key. */
function finalCheck(m: Merged): Config {
  const r = configSchema().safeParse(m.value);
  const problems = r.success
    ? crossFieldProblems(r.data).map(([path, message]) => ({ path, key: formatPath(path), message }))
    : problemsFromIssues(r.error.issues, m.value, configSchema());
  if (r.success && problems.length === 0) return r.data;
  throw configError(
    problems.map((p) => {
      const src = nearestSource(m.provenance, p.path);
      const label = src?.file ?? (src?.env ? `environment variable ${src.env}` : src?.layer === 'default' ? 'built-in defaults' : src?.layer === 'flag' ? 'command flags' : 'configuration');
      return { ...p, label, ...(src?.line !== undefined ? { line: src.line, column: src.column! } : {}) };
    }),
    'the configuration',
  );
}

function nearestSource(prov: ProvenanceMap, path: KeyPath): Source | undefined {
  for (let n = path.length; n > 0; n--) {
    const s = prov[formatPath(path.slice(0, n))];
    if (s) return s;
  }
  return undefined;
}
