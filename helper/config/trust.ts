/**
 * Project configuration is untrusted: a cloned repository may carry a
 * `.coi/config.toml` written to weaken the sandbox it will run in (§2.6).
 * Settings from the project (its config and its profiles) that weaken
 * isolation compared with what lies below them are found here; the loader
 * leaves them out unless the user pinned exactly this set with `coi trust`.
 *
 * "Below" is the configuration the project layer would override, so a project
 * that writes `mode = "restricted"` is harmless by default but is caught when
 * the user's own config chose `allowlist`.
 */
import { createHash } from 'node:crypto';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Config, ConfigPatch } from './schema';
import { formatPath, KeyIndex, locate } from './toml';

export interface PrivilegedSetting {
  /** Path of the file, relative to the workspace (".coi/config.toml"): part of the pin. */
  source: string;
  /** Absolute path, for messages. */
  file: string;
  path: Array<string | number>;
  key: string;
  value: unknown;
  /** What it would do, e.g. "opens the network". */
  reason: string;
  line?: number;
  column?: number;
}

export interface TrustContext {
  /** Real path of the workspace. */
  workspace: string;
  home: string;
  /** Resolves symlinks of existing paths (mounts must not escape through a link). */
  realpath(p: string): string;
}

type Check = (value: unknown, below: Config) => string | undefined;

const get = (o: unknown, path: readonly string[]): unknown => path.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);

const turnsOff = (reason: string): Check => (v) => (v === false ? reason : undefined);
const turnsOn = (reason: string): Check => (v) => (v === true ? reason : undefined);
const nonEmpty = (reason: string): Check => (v) => ((Array.isArray(v) && v.length > 0) || (typeof v === 'string' && v !== '') || (v && typeof v === 'object' && Object.keys(v).length > 0) ? reason : undefined);
const differs = (reason: string, path: string[]): Check => (v, b) => (JSON.stringify(v) !== JSON.stringify(get(b, path)) ? reason : undefined);
const raises = (reason: string, path: string[]): Check => (v, b) => (typeof v === 'number' && v > (get(b, path) as number) ? reason : undefined);
const lowers = (reason: string, path: string[]): Check => (v, b) => (typeof v === 'number' && v < (get(b, path) as number) ? reason : undefined);
const drops = (reason: string, path: string[]): Check => (v, b) => {
  const below = get(b, path);
  return Array.isArray(v) && Array.isArray(below) && below.some((x) => !v.includes(x)) ? reason : undefined;
};

const MODE_RANK: Record<string, number> = { open: 0, restricted: 1, allowlist: 2 };
const ONE_LINER_RANK: Record<string, number> = { off: 0, warn: 1, critical: 2 };

/**
 * Each key a project may not set on its own, with the test for "weakens".
 * A key whose weakening cannot be judged from the value alone (a host path, a
 * command) is privileged whenever set.
 */
const RULES: ReadonlyArray<readonly [string, Check]> = [
  ['network.mode', (v, b) => ((MODE_RANK[v as string] ?? 0) < (MODE_RANK[b.network.mode] ?? 0) ? `loosens the network from ${b.network.mode} to ${String(v)}` : undefined)],
  ['network.block_private_networks', turnsOff('unblocks private networks')],
  ['network.block_metadata_endpoint', turnsOff('unblocks the cloud metadata endpoint')],
  ['network.allow_local_network_access', turnsOn('opens the local network')],
  ['network.allowed_domains', (v, b) => (Array.isArray(v) && v.some((d) => !b.network.allowed_domains.includes(d as string)) ? 'adds destinations to the allowlist' : undefined)],
  ['network.dns_servers', nonEmpty('chooses the DNS servers')],
  ['network.allowed_ports', differs('changes the allowed ports', ['network', 'allowed_ports'])],
  ['network.hosts', nonEmpty('adds host entries and opens the network to them')],
  ['network.logging.enabled', turnsOff('turns network logging off')],
  ['network.logging.path', differs('moves the network log on the host', ['network', 'logging', 'path'])],
  ['sockets', nonEmpty('passes host sockets into the container')],
  ['ports.map', nonEmpty('publishes container ports on the host')],
  ['ports.pool', raises('publishes container ports on the host', ['ports', 'pool'])],
  ['credentials', nonEmpty('copies host credentials into the container')],
  ['container.session_name', differs('changes which sandbox the workspace maps to', ['container', 'session_name'])],
  ['container.docker', turnsOn('allows nested containers (Docker)')],
  ['defaults.profile', differs('selects the profile', ['defaults', 'profile'])],
  ['defaults.env_commands', nonEmpty('runs commands on the host')],
  ['prompts', nonEmpty('defines prompts')],
  ['tool.pre_launch', nonEmpty('runs commands before the agent starts')],
  ['tool.context_file', nonEmpty('reads a host file into the sandbox')],
  ['tool.context_json_file', nonEmpty('writes to a host file')],
  ['paths.sessions_dir', differs('moves where coi writes on the host', ['paths', 'sessions_dir'])],
  ['paths.storage_dir', differs('moves where coi writes on the host', ['paths', 'storage_dir'])],
  ['paths.logs_dir', differs('moves where coi writes on the host', ['paths', 'logs_dir'])],
  ['incus.project', differs('changes the Incus project', ['incus', 'project'])],
  ['incus.group', differs('changes the Incus group', ['incus', 'group'])],
  ['git.name', nonEmpty('sets the git identity')],
  ['git.email', nonEmpty('sets the git identity')],
  ['git.protected_branches', drops('unprotects branches', ['git', 'protected_branches'])],
  ['git.writable_hooks', turnsOn('makes .git/hooks writable from the container')],
  ['git.readonly', (v, b) => (v === false && b.git.readonly ? 'allows commits and pushes' : undefined)],
  ['ssh.forward_agent', turnsOn('forwards your SSH agent')],
  ['security.protected_paths', drops('unprotects workspace paths', ['security', 'protected_paths'])],
  ['security.writable_paths', nonEmpty('makes protected paths writable')],
  ['security.disable_protection', turnsOn('turns path protection off')],
  ['security.host_immutable', turnsOff('leaves protected host files mutable')],
  ['security.secret_paths', drops('exposes secret files', ['security', 'secret_paths'])],
  ['security.reduce_kernel_surface', (v, b) => (v === false && b.security.reduce_kernel_surface ? 'widens the kernel surface' : undefined)],
  ['security.reduce_kernel_surface_strict', (v, b) => (v === false && b.security.reduce_kernel_surface_strict ? 'widens the kernel surface' : undefined)],
  ['monitoring.enabled', (v, b) => (v === false && b.monitoring.enabled ? 'turns monitoring off' : undefined)],
  ['monitoring.auto_pause_on_high', turnsOff('stops pausing on high threats')],
  ['monitoring.auto_kill_on_critical', turnsOff('stops killing on critical threats')],
  ['monitoring.poll_interval_sec', raises('slows monitoring down', ['monitoring', 'poll_interval_sec'])],
  ['monitoring.file_read_threshold_mb', raises('raises a detection threshold', ['monitoring', 'file_read_threshold_mb'])],
  ['monitoring.file_read_rate_mb_per_sec', raises('raises a detection threshold', ['monitoring', 'file_read_rate_mb_per_sec'])],
  ['monitoring.process_count_threshold', raises('raises a detection threshold', ['monitoring', 'process_count_threshold'])],
  ['monitoring.process_spawn_rate_threshold', raises('raises a detection threshold', ['monitoring', 'process_spawn_rate_threshold'])],
  ['monitoring.audit_log_retention_days', lowers('shortens audit log retention', ['monitoring', 'audit_log_retention_days'])],
  ['monitoring.reverse_shell_one_liners', (v, b) => ((ONE_LINER_RANK[v as string] ?? 0) < (ONE_LINER_RANK[b.monitoring.reverse_shell_one_liners] ?? 0) ? 'weakens reverse shell detection' : undefined)],
  ['monitoring.nft.enabled', (v, b) => (v === false && b.monitoring.nft.enabled ? 'turns network monitoring off' : undefined)],
  ['monitoring.nft.log_dns_queries', turnsOff('stops logging DNS queries')],
  ['monitoring.nft.rate_limit_per_second', lowers('logs less network traffic', ['monitoring', 'nft', 'rate_limit_per_second'])],
  ['monitoring.nft.dns_query_threshold', raises('raises a detection threshold', ['monitoring', 'nft', 'dns_query_threshold'])],
  ['monitoring.nft.lima_host', nonEmpty('reads logs from another host')],
  ['detection.gtfobins_source', nonEmpty('changes detection rules')],
  ['detection.gtfobins_dir', differs('changes detection rules', ['detection', 'gtfobins_dir'])],
  ['detection.sigma_source', nonEmpty('changes detection rules')],
  ['detection.sigma_dir', differs('changes detection rules', ['detection', 'sigma_dir'])],
];

/** Keys a project setting may be held back on: for documentation and `coi config show`. */
export const PRIVILEGED_KEYS: readonly string[] = [
  'mounts (outside the workspace)',
  'container.build.script (outside the workspace)',
  'defaults.forward_env (new names)',
  ...RULES.map(([k]) => k),
];

function expandHome(p: string, home: string): string {
  return p === '~' ? home : p.startsWith('~/') ? join(home, p.slice(2)) : p;
}

export function isInside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r) && r.split(sep)[0] !== '..');
}

/**
 * The privileged settings of one project file's patch. `below` is the
 * effective configuration this patch would override.
 */
export function classifyProjectPatch(
  patch: ConfigPatch,
  below: Config,
  ctx: TrustContext,
  where: { source: string; file: string; index?: KeyIndex },
): PrivilegedSetting[] {
  const out: PrivilegedSetting[] = [];
  const add = (path: Array<string | number>, value: unknown, reason: string) => {
    const s: PrivilegedSetting = { source: where.source, file: where.file, path, key: formatPath(path), value, reason };
    const pos = where.index ? locate(where.index, path) : undefined;
    if (pos) Object.assign(s, pos);
    out.push(s);
  };
  for (const [key, check] of RULES) {
    const path = key.split('.');
    const v = get(patch, path);
    if (v === undefined) continue;
    const reason = check(v, below);
    if (reason) add(path, v, reason);
  }
  (patch.mounts ?? []).forEach((m, i) => {
    const host = ctx.realpath(resolve(ctx.workspace, expandHome(m.host, ctx.home)));
    // The resolved path is part of the pinned value: swapping a trusted
    // directory for a symlink elsewhere must ask again.
    if (!isInside(host, ctx.workspace)) add(['mounts', i], { ...m, resolved: host }, `mounts ${host}, outside the workspace`);
  });
  const script = patch.container?.build?.script;
  if (script) {
    const host = ctx.realpath(resolve(ctx.workspace, expandHome(script, ctx.home)));
    if (!isInside(host, ctx.workspace)) add(['container', 'build', 'script'], { script, resolved: host }, `runs ${host}, outside the workspace, in the image build`);
  }
  const fwd = patch.defaults?.forward_env;
  if (fwd) {
    const added = fwd.filter((n) => !below.defaults.forward_env.includes(n));
    if (added.length) add(['defaults', 'forward_env'], added, `copies host variables ${added.join(', ')} into the container`);
  }
  return out;
}

/** The patch without the given settings (which must have been found in it). */
export function withoutPrivileged<P extends ConfigPatch>(patch: P, items: readonly PrivilegedSetting[]): P {
  const out = structuredClone(patch) as Record<string, unknown>;
  const mountIdx = new Set(items.filter((s) => s.path[0] === 'mounts' && typeof s.path[1] === 'number').map((s) => s.path[1] as number));
  if (mountIdx.size && Array.isArray(out.mounts)) out.mounts = (out.mounts as unknown[]).filter((_, i) => !mountIdx.has(i));
  for (const s of items) {
    if (s.path[0] === 'mounts') continue;
    if (s.key === 'defaults.forward_env') {
      const d = out.defaults as { forward_env?: string[] };
      d.forward_env = (d.forward_env ?? []).filter((n) => !(s.value as string[]).includes(n));
      continue;
    }
    const parent = get(out, s.path.slice(0, -1) as string[]);
    if (parent && typeof parent === 'object') delete (parent as Record<string, unknown>)[s.path[s.path.length - 1] as string];
  }
  return out as P;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/**
 * SHA-256 of exactly the privileged settings: their file (relative to the
 * workspace), key and value. Reordering the file or editing comments keeps
 * the pin; changing any of these settings breaks it.
 */
export function trustHash(items: readonly PrivilegedSetting[]): string {
  const rows = items.map((s) => canonical({ source: s.source, key: s.key, value: s.value })).sort();
  return createHash('sha256').update(rows.join('\n')).digest('hex');
}
