/**
 * The file-reading side of configuration: finds and reads the files for
 * resolve.ts, and reads/writes the trust store. HOME, the workspace and the
 * environment come in as parameters so tests run against temp directories.
 */
import { existsSync, realpathSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { CoiError, ErrorCodes } from '../errors';
import { cachedResolve } from './cache';
import { profileChain, type ProfileScope } from './profiles';
import { ConfigInputs, LoadedConfig, ProfileSource, profilesOf, resolveConfig, TextFile } from './resolve';
import type { ConfigPatch } from './schema';
import { PrivilegedSetting } from './trust';
import { readTrustStore, TrustEntry, trustStorePath, writeTrustStore } from './trust-store';

export interface LoadOptions {
  home: string;
  /** The workspace (project root); its `.coi/` holds the project config and profiles. */
  workspace: string;
  /** For a relative $COI_CONFIG; defaults to the workspace. */
  cwd?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Values from command flags: the top layer. */
  flags?: ConfigPatch;
  /** --profile */
  profile?: string;
}

/** realpath that also works for paths that do not exist yet (resolves the existing part). */
export function realpathLoose(p: string): string {
  const abs = resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : join(realpathLoose(parent), basename(abs));
  }
}

async function readIfExists(path: string): Promise<TextFile | undefined> {
  try {
    return { path, text: await readFile(path, 'utf8') };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EISDIR') throw new CoiError(ErrorCodes.INVALID_INPUT, `${path} is a directory, not a configuration file`);
    throw new CoiError(ErrorCodes.INVALID_INPUT, `cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
}

function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p;
}

async function readProfileDir(dir: string, scope: Exclude<ProfileScope, 'builtin'>): Promise<ProfileSource[]> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => d.name);
  } catch {
    return [];
  }
  const out: ProfileSource[] = [];
  for (const name of names.sort()) {
    const cfg = await readIfExists(join(dir, name, 'config.toml'));
    if (!cfg) continue;
    const context = await readIfExists(join(dir, name, 'CONTEXT.md'));
    out.push({ name, scope, file: cfg.path, text: cfg.text, ...(context ? { context } : {}) });
  }
  return out;
}

export function workspaceRealpath(workspace: string): string {
  try {
    return realpathSync(resolve(workspace));
  } catch {
    throw new CoiError(ErrorCodes.NOT_FOUND, `workspace ${workspace} does not exist`);
  }
}

/** Reads everything resolveConfig needs. */
export async function readConfigInputs(opts: LoadOptions): Promise<ConfigInputs> {
  const env = opts.env ?? {};
  const home = opts.home;
  const workspace = workspaceRealpath(opts.workspace);

  const legacy = join(workspace, '.coi.toml');
  if (existsSync(legacy)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `${legacy}: the single-file project config is no longer read; move it to ${join(workspace, '.coi', 'config.toml')}`, {
      remedy: { title: 'Move it', shell: `mkdir -p .coi && git mv .coi.toml .coi/config.toml` },
    });
  }

  const userPath = join(home, '.coi', 'config.toml');
  const projectPath = join(workspace, '.coi', 'config.toml');
  let coiConfigPath: string | undefined;
  if (env.COI_CONFIG) {
    const p = expandHome(env.COI_CONFIG, home);
    coiConfigPath = isAbsolute(p) ? p : resolve(opts.cwd ?? workspace, p);
    if (!existsSync(coiConfigPath)) {
      throw new CoiError(ErrorCodes.NOT_FOUND, `COI_CONFIG names ${coiConfigPath}, which does not exist`, { remedy: { title: 'Create the file or unset COI_CONFIG' } });
    }
  }

  // One file reached twice (workspace = home, COI_CONFIG = the user config)
  // is read once, as the more trusted layer: appended arrays must not double,
  // and the user's own file is never treated as an untrusted project file.
  const seen = new Set<string>();
  const once = (p: string | undefined) => {
    if (p === undefined) return undefined;
    const r = realpathLoose(p);
    if (seen.has(r)) return undefined;
    seen.add(r);
    return p;
  };
  const userP = once(userPath);
  const coiP = once(coiConfigPath);
  const projectP = once(projectPath);

  const dirsSeen = new Set<string>();
  const profileDirs: Array<[string, Exclude<ProfileScope, 'builtin'>]> = [[join(home, '.coi', 'profiles'), 'user']];
  if (coiConfigPath) profileDirs.push([join(dirname(coiConfigPath), 'profiles'), 'coi-config']);
  profileDirs.push([join(workspace, '.coi', 'profiles'), 'project']);
  const profiles: ProfileSource[] = [];
  for (const [dir, scope] of profileDirs) {
    const r = realpathLoose(dir);
    if (dirsSeen.has(r)) continue;
    dirsSeen.add(r);
    profiles.push(...(await readProfileDir(dir, scope)));
  }

  const { store, problem } = await readTrustStore(home);
  const inputs: ConfigInputs = { home, workspace, env, profiles, trustStore: store, realpath: realpathLoose };
  if (opts.flags) inputs.flags = opts.flags;
  if (opts.profile) inputs.profile = opts.profile;
  if (problem) inputs.trustStoreProblem = problem;
  const user = userP && (await readIfExists(userP));
  const project = projectP && (await readIfExists(projectP));
  const coi = coiP && (await readIfExists(coiP));
  if (user) inputs.user = user;
  if (project) inputs.project = project;
  if (coi) inputs.coiConfig = coi;
  return inputs;
}

/** The effective configuration for a workspace: `{config, provenance, warnings, profile, trust}`. */
export async function loadConfig(opts: LoadOptions): Promise<LoadedConfig> {
  return cachedResolve(await readConfigInputs(opts), resolveConfig);
}

// ── profiles ────────────────────────────────────────────────────────────────

export interface ProfileSummary {
  name: string;
  scope: ProfileScope;
  file?: string;
  inherits?: string;
  description?: string;
  hasContext: boolean;
}

/** Every profile visible from the workspace; a duplicate name, a broken file or a cycle is an error. */
export async function listProfiles(opts: LoadOptions): Promise<ProfileSummary[]> {
  const reg = profilesOf(await readConfigInputs(opts));
  for (const name of reg.keys()) profileChain(reg, name);
  return [...reg.values()].map((p) => ({
    name: p.name,
    scope: p.scope,
    ...(p.file ? { file: p.file } : {}),
    ...(p.inherits ? { inherits: p.inherits } : {}),
    ...(p.description ? { description: p.description } : {}),
    hasContext: !!p.context,
  }));
}

// ── trust ───────────────────────────────────────────────────────────────────

export interface TrustResult {
  workspace: string;
  /** Undefined when the project has nothing that needs trust. */
  sha256?: string;
  settings: PrivilegedSetting[];
}

/** `coi trust`: pins exactly the project's current privileged settings. */
export async function trustWorkspace(opts: LoadOptions): Promise<TrustResult> {
  const inputs = await readConfigInputs({ ...opts, env: { ...opts.env, COI_TRUST_ALL: undefined } });
  const loaded = resolveConfig(inputs);
  const { sha256, settings } = loaded.trust;
  if (sha256) {
    const store = structuredClone(inputs.trustStore);
    store.workspaces[inputs.workspace] = { sha256, trusted_at: new Date().toISOString(), settings: settings.map((s) => `${s.source}: ${s.key}`) };
    await writeTrustStore(opts.home, store);
  }
  return { workspace: inputs.workspace, ...(sha256 ? { sha256 } : {}), settings };
}

/** `coi untrust`: forgets the pin; returns whether there was one. */
export async function untrustWorkspace(opts: Pick<LoadOptions, 'home' | 'workspace'>): Promise<{ workspace: string; removed: boolean }> {
  const workspace = existsSync(opts.workspace) ? workspaceRealpath(opts.workspace) : resolve(opts.workspace);
  const { store, problem } = await readTrustStore(opts.home);
  if (problem) throw new CoiError(ErrorCodes.INVALID_INPUT, problem, { remedy: { title: `Remove ${trustStorePath(opts.home)}` } });
  if (!store.workspaces[workspace]) return { workspace, removed: false };
  delete store.workspaces[workspace];
  await writeTrustStore(opts.home, store);
  return { workspace, removed: true };
}

export async function listTrusted(home: string): Promise<Array<{ workspace: string } & TrustEntry>> {
  const { store, problem } = await readTrustStore(home);
  if (problem) throw new CoiError(ErrorCodes.INVALID_INPUT, problem, { remedy: { title: `Remove ${trustStorePath(home)}` } });
  return Object.entries(store.workspaces)
    .map(([workspace, e]) => ({ workspace, ...e }))
    .sort((a, b) => a.workspace.localeCompare(b.workspace));
}
