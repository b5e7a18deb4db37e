/**
 * The whole COI configuration as one zod schema: every table and key users of
 * the Go `coi` may have in their files (reference §2.4), plus ours (network
 * backend, snapshots, pool, custom tools), each with its default.
 *
 * Objects are strict so that a misspelled key is an error rather than a
 * setting that silently does nothing. There are no transforms: a file's parsed
 * TOML that passes the schema is kept as it was written, which is what lets the
 * loader merge layers key by key and say which layer set each value.
 */
import { z } from 'zod';
import { once } from '../lazy';
import { safeStatePath } from '../sessions/paths';

// ── value rules ─────────────────────────────────────────────────────────────

/** Go's time.Duration syntax, which `coi` users already write ("30s", "1h30m"). */
const GO_DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const DURATION_UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a Go-style duration, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!GO_DURATION.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * (DURATION_UNIT_MS[m[2]!] ?? 0);
  return ms;
}

const durationMessage = 'expected a duration greater than zero, such as "30s", "20m", "4h" or "1h30m"';
// Each value rule is a regex (which the JSON Schema carries to the editor)
// plus, where a regex cannot say it, a refinement only the loader checks.
const duration = () =>
  z
    .string()
    .regex(GO_DURATION, { message: durationMessage, abort: true })
    .refine((s) => (parseDuration(s) ?? 0) > 0, { message: durationMessage });
/** "" means unset (no limit). */
const optionalDuration = () =>
  z
    .string()
    .regex(new RegExp(`^$|${GO_DURATION.source}`), { message: `${durationMessage}, or "" for none`, abort: true })
    .refine((s) => s === '' || (parseDuration(s) ?? 0) > 0, { message: `${durationMessage}, or "" for none` });

export const CPU_COUNT = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;
export const CPU_ALLOWANCE = /^(\d+)%$|^(\d+)ms\/(\d+)ms$/;
export const MEMORY_SIZE = /^(\d+)(%|[KMGT]i?B)$/;
/** Incus disk I/O limits: bytes per second with a unit, or operations per second. */
export const DISK_IO = /^\d+(\.\d+)?(B|[kKMGTPE]i?B)$|^\d+iops$/;
export const DISK_SIZE = /^\d+(\.\d+)?(B|[kKMGTPE]i?B)$/;
export const ALIAS = /^[a-zA-Z][a-zA-Z0-9_-]{0,63}$/;
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const PROFILE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function isIpv4Cidr(s: string): boolean {
  const [ip, bits, ...rest] = s.split('/');
  if (rest.length || ip === undefined || !IPV4.test(ip)) return false;
  return bits === undefined || (/^\d{1,2}$/.test(bits) && Number(bits) <= 32);
}

/** allowed_domains entries: a domain, an IPv4 address or CIDR, optionally with ":port". Wildcards are refused (reference §5.1). */
export function isAllowlistEntry(s: string): boolean {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(s);
  const host = m?.[1] ?? '';
  if (m?.[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) return false;
  return isIpv4Cidr(host) || (HOSTNAME.test(host) && !/^[\d.]+$/.test(host));
}

const percentOk = (n: number) => n > 0 && n <= 100;

export const NETWORK_MODES = ['restricted', 'allowlist', 'open'] as const;
export const DEFAULT_ALLOWED_DOMAINS = ['registry.npmjs.org', 'npm.pkg.github.com', 'api.anthropic.com', 'platform.claude.com'];
export const DEFAULT_PROTECTED_PATHS = [
  '.git/hooks',
  '.git/config',
  '.git/config.worktree',
  '.git/info/attributes',
  '.husky',
  '.vscode',
  '.coi',
  '.claude/settings.json',
  '.claude/settings.local.json',
  '.codex/config.toml',
];

/**
 * Built on first use, not when the module loads: a command whose
 * configuration is in the cache (config/cache.ts) never needs them.
 */
function buildSchemas() {
  const cpuCount = z.string().regex(/^$|^\d+(-\d+)?(,\d+(-\d+)?)*$/, { message: 'expected a CPU count such as "2", a set such as "0-3,6", or "" for no limit' });
  const cpuAllowance = z
    .string()
    .regex(/^$|^\d+%$|^\d+ms\/\d+ms$/, { message: 'expected a CPU allowance such as "50%" or "25ms/100ms", or "" for no limit', abort: true })
    .refine(
      (s) => {
        if (s === '') return true;
        const m = CPU_ALLOWANCE.exec(s);
        if (!m) return false;
        if (m[1] !== undefined) return percentOk(Number(m[1]));
        return Number(m[2]) > 0 && Number(m[3]) > 0 && Number(m[2]) <= Number(m[3]);
      },
      { message: 'expected a CPU allowance such as "50%" (1-100) or "25ms/100ms" (time within period)' },
    );
  const memorySize = (what: string) =>
    z
      .string()
      .regex(/^$|^\d+(%|[KMGT]i?B)$/, { message: `expected ${what} such as "2GiB", "512MiB" or "50%", or "" for no limit`, abort: true })
      .refine(
        (s) => {
          if (s === '') return true;
          const m = MEMORY_SIZE.exec(s);
          return !!m && (m[2] === '%' ? percentOk(Number(m[1])) : Number(m[1]) > 0);
        },
        { message: `expected ${what} greater than zero (a percentage at most 100%)` },
      );
  const diskIo = z.string().regex(/^$|^\d+(\.\d+)?(B|[kKMGTPE]i?B)$|^\d+iops$/, { message: 'expected a rate such as "50MiB" (bytes per second) or "1000iops", or "" for no limit' });
  const diskSize = z.string().regex(/^$|^\d+(\.\d+)?(B|[kKMGTPE]i?B)$/, { message: 'expected a size such as "20GiB", or "" for the pool default' });
  const priority = z.number().int().min(0).max(10);
  const port = z.number().int().min(1).max(65535);
  const envName = z.string().regex(ENV_NAME, { message: 'expected an environment variable name (letters, digits and _, not starting with a digit)' });
  const nonEmpty = z.string().min(1, { message: 'must not be empty' });
  const absolutePath = z.string().refine((s) => s.startsWith('/'), { message: 'expected an absolute path inside the container, such as "/data"' });
  /** Workspace-relative paths of the protected-path lists: never absolute, never climbing out. */
  const workspaceRelative = z.string().refine((s) => s !== '' && !s.startsWith('/') && !s.split('/').includes('..'), {
    message: 'expected a path relative to the workspace, without ".."',
  });
  // "shell" is a plain bash login shell: for debugging and scripting the sandbox itself.
  const toolName = z.enum(['claude', 'opencode', 'aider', 'codex', 'pi', 'omp', 'custom', 'shell']);

  const strs = (values: string[] = []) => z.array(z.string()).default(() => [...values]);

  // ── tables ──────────────────────────────────────────────────────────────────

  const containerBuild = z.strictObject({
    base: z.string().default('images:ubuntu/24.04').describe('Base image the default image is built from (an image server alias).'),
    script: z.string().default('').describe('Path of a custom build script.'),
    commands: strs().describe('Shell commands run after the build script.'),
    compression: z.enum(['', 'none', 'gzip', 'bzip2', 'lz4', 'lzma', 'xz', 'zstd']).default('').describe('Image compression; "" = the Incus default.'),
    agents: z.array(toolName).default(() => ['claude', 'opencode'] as Array<z.infer<typeof toolName>>).describe('Agents installed in the image.'),
    cloud_init: z.boolean().default(false),
  });

  const container = z.strictObject({
    image: nonEmpty.default('coi').describe('Image alias sandboxes start from.'),
    persistent: z.boolean().default(false).describe('Keep the container after the session (default: ephemeral).'),
    storage_pool: z.string().default('').describe('Incus storage pool; "" = the default pool.'),
    alias: z.string().regex(/^$|^[a-zA-Z][a-zA-Z0-9_-]{0,63}$/, { message: 'expected a letter followed by up to 63 letters, digits, "_" or "-"' }).default(''),
    session_name: z.string().default('').describe('Replaces the workspace path in the container name hash.'),
    shutdown_timeout: z.number().int().min(1).default(60).describe('Seconds of graceful stop before a forced one.'),
    ready_timeout: z.number().int().min(1).default(30).describe('Seconds to wait for a started container to answer.'),
    stale_base_check: z.enum(['warn', 'error', 'off']).default('warn'),
    docker: z.boolean().default(false).describe('Allow Docker inside the container (security.nesting and friends).'),
    build: containerBuild.prefault({}),
  });

  const defaultsTable = z.strictObject({
    profile: z.string().regex(/^$|^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, { message: 'expected a profile name' }).default('').describe('Profile used when none is given.'),
    forward_env: z.array(envName).default(() => []).describe('Names of host environment variables copied into the container.'),
    environment: z.record(envName, z.string()).default(() => ({})).describe('Literal variables for the container; "" removes one set by a lower layer.'),
    env_commands: z.record(envName, z.string()).default(() => ({})).describe('Variables whose value is the output of a host command.'),
    env_command_timeout: duration().default('30s'),
  });

  const paths = z.strictObject({
    sessions_dir: z.string().default('~/.coi/sessions'),
    storage_dir: z.string().default('~/.coi/storage'),
    logs_dir: z.string().default('~/.coi/logs'),
    preserve_workspace_path: z.boolean().default(false).describe('Mount the workspace at its host path instead of /workspace.'),
  });

  const incus = z.strictObject({
    project: nonEmpty.default('default'),
    group: nonEmpty.default('incus-admin'),
    code_uid: z.number().int().min(1).max(4_294_967_294).default(1000),
    code_user: nonEmpty.default('code'),
    disable_shift: z.boolean().default(false).describe('Use raw.idmap instead of idmapped mounts.'),
  });

  const networkHost = z.strictObject({
    ip: z.string().regex(IPV4, { message: 'expected an IPv4 address' }),
    hostnames: z.array(z.string().regex(HOSTNAME, { message: 'expected a host name' })).min(1, { message: 'expected at least one host name' }),
    ports: z.array(port).default(() => []),
  });


  const network = z.strictObject({
    mode: z.enum(NETWORK_MODES).default('restricted').describe('restricted: internet yes, private networks no; allowlist: only allowed_domains; open: no filtering.'),
    backend: z.enum(['nftables', 'firewalld']).default('nftables'),
    block_private_networks: z.boolean().default(true),
    block_metadata_endpoint: z.boolean().default(true),
    allowed_domains: z
      .array(z.string().refine(isAllowlistEntry, { message: 'expected a domain, an IPv4 address or CIDR, optionally with ":port" (no wildcards)' }))
      .default(() => [...DEFAULT_ALLOWED_DOMAINS])
      .describe('What allowlist mode lets through.'),
    refresh_interval_minutes: z.number().int().min(1).default(30),
    allow_local_network_access: z.boolean().default(false).describe('Let restricted mode reach private (RFC 1918) ranges.'),
    use_sudo: z.boolean().default(true),
    dns_servers: z.array(z.string().regex(IPV4, { message: 'expected an IPv4 address' })).default(() => []),
    allowed_ports: z.array(port).default(() => []),
    hosts: z.array(networkHost).default(() => []),
    logging: z
      .strictObject({
        enabled: z.boolean().default(true),
        path: z.string().default('~/.coi/logs/network.log'),
      })
      .prefault({}),
  });

  const tool = z.strictObject({
    name: toolName.default('claude').describe('The agent to run.'),
    binary: z.string().default('').describe('Executable name to run instead of the tool\'s own.'),
    permission_mode: z.enum(['bypass', 'interactive']).default('bypass'),
    context_file: z.string().default('').describe('Host file used instead of the generated sandbox context.'),
    auto_context: z.boolean().default(true),
    context_json: z.boolean().default(false),
    context_json_file: z.string().default(''),
    pre_launch: strs().describe('Commands run in the container before the tool starts.'),
    claude: z
      .strictObject({
        effort_level: z.enum(['low', 'medium', 'high', 'xhigh', 'max', 'auto']).optional(),
        model: z.string().default(''),
      })
      .prefault({}),
    codex: z.strictObject({ model: z.string().default(''), reasoning_effort: z.string().default('') }).prefault({}),
    custom: z
      .strictObject({
        args: strs().describe('Arguments for the custom tool\'s binary.'),
        resume_args: strs().describe('Arguments that make it resume its last session.'),
        state_dirs: z
          .array(z.string().refine((s) => safeStatePath(s) !== undefined, { message: 'expected a path inside the home, such as ".mytool" (no leading /, no ..)' }))
          .default(() => [])
          .describe('Directories (in the container user\'s home) saved with the session.'),
      })
      .prefault({}),
  });

  const mount = z.strictObject({
    host: nonEmpty.describe('Host path; relative paths are relative to the workspace.'),
    container: absolutePath,
    readonly: z.boolean().default(false),
    shift: z.boolean().optional(),
  });

  const socket = z.strictObject({
    host: nonEmpty,
    container: absolutePath,
    env: envName.optional(),
  });

  const ports = z.strictObject({
    pool: z.number().int().min(0).max(10).default(0),
    map: z
      .array(
        z.strictObject({
          name: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/, { message: 'expected a name of letters, digits and _' }),
          container: port,
          host: z.number().int().min(0).max(65535).optional(),
          listen: z.string().regex(IPV4, { message: 'expected an IPv4 address' }).default('127.0.0.1'),
        }),
      )
      .default(() => []),
  });

  const credential = z
    .strictObject({
      bundle: z.string().optional(),
      host: z.string().optional(),
      container: absolutePath.optional(),
      mode: z.string().regex(/^0?[0-7]{3}$/, { message: 'expected an octal mode such as "0600"' }).optional(),
    })
    .refine((c) => (c.bundle !== undefined) !== (c.host !== undefined && c.container !== undefined), {
      message: 'expected either bundle = "<name>" or both host and container',
    });

  const limits = z.strictObject({
    cpu: z
      .strictObject({
        count: cpuCount.default('').describe('CPUs: a count ("2") or a set ("0-3,6").'),
        allowance: cpuAllowance.default(''),
        priority: priority.optional().describe('0 (lowest) to 10; unset leaves the Incus default.'),
      })
      .prefault({}),
    memory: z
      .strictObject({
        limit: memorySize('a memory size').default(''),
        enforce: z.enum(['soft', 'hard']).default('hard').describe('hard: the kernel OOM-kills past the limit; soft: only reclaims harder under host pressure.'),
        swap: z.union([z.boolean(), z.enum(['true', 'false'])], { error: 'expected true or false' }).default(true),
      })
      .prefault({}),
    disk: z
      .strictObject({
        read: diskIo.default(''),
        write: diskIo.default(''),
        max: diskIo.default(''),
        priority: priority.optional(),
        size: diskSize.default(''),
        tmpfs_size: memorySize('a /tmp size').default(''),
      })
      .prefault({}),
    runtime: z
      .strictObject({
        max_duration: optionalDuration().default('').describe('Stop the sandbox after this long, e.g. "4h"; "" for no limit.'),
        max_processes: z.number().int().min(0).default(0).describe('Process limit; 0 for none.'),
        auto_stop: z.boolean().default(true).describe('Stop at max_duration (false: only warn).'),
        stop_graceful: z.boolean().default(true),
      })
      .prefault({}),
  });

  const git = z.strictObject({
    writable_hooks: z.boolean().default(false),
    name: z.string().default(''),
    email: z.string().default(''),
    seed_host_identity: z.boolean().default(true),
    readonly: z.boolean().default(false),
    strip_attribution: z.boolean().default(true),
    strip_attribution_patterns: strs(),
    protected_branches: strs(['main', 'master']),
  });


  const security = z.strictObject({
    protected_paths: z.array(workspaceRelative).default(() => [...DEFAULT_PROTECTED_PATHS]).describe('Workspace paths mounted read-only in the container.'),
    additional_protected_paths: z.array(workspaceRelative).default(() => []),
    writable_paths: z.array(workspaceRelative).default(() => []),
    disable_protection: z.boolean().default(false),
    host_immutable: z.boolean().default(true),
    secret_paths: strs().describe('Globs of workspace files hidden from the container.'),
    reduce_kernel_surface: z.boolean().default(false),
    reduce_kernel_surface_strict: z.boolean().default(false),
  });

  const positive = z.number().positive();

  const monitoring = z.strictObject({
    enabled: z.boolean().default(false),
    auto_pause_on_high: z.boolean().default(true),
    auto_kill_on_critical: z.boolean().default(true),
    poll_interval_sec: positive.default(2),
    file_read_threshold_mb: positive.default(50),
    file_read_rate_mb_per_sec: positive.default(10),
    audit_log_retention_days: z.number().int().min(1).default(30),
    process_count_threshold: z.number().int().min(1).default(100),
    process_spawn_rate_threshold: z.number().int().min(1).default(50),
    forensics_on_kill: z.boolean().default(false),
    reverse_shell_one_liners: z.enum(['critical', 'warn', 'off']).default('critical'),
    nft: z
      .strictObject({
        enabled: z.boolean().default(false),
        rate_limit_per_second: z.number().int().min(1).default(100),
        dns_query_threshold: z.number().int().min(1).default(100),
        log_dns_queries: z.boolean().default(true),
        lima_host: z.string().default(''),
      })
      .prefault({}),
  });

  const timezone = z.strictObject({
    mode: z.enum(['host', 'fixed', 'utc']).default('host'),
    name: z.string().default('').describe('IANA time zone for mode = "fixed", e.g. "Europe/Berlin".'),
  });

  const detection = z.strictObject({
    gtfobins_source: z.string().default(''),
    gtfobins_dir: z.string().default('~/.coi/gtfobins'),
    sigma_source: z.string().default(''),
    sigma_dir: z.string().default('~/.coi/sigma'),
  });

  // ── the whole ───────────────────────────────────────────────────────────────

  const configShape = {
    container: container.prefault({}),
    defaults: defaultsTable.prefault({}),
    prompts: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'expected a prompt name' }), z.string()).default(() => ({})),
    paths: paths.prefault({}),
    incus: incus.prefault({}),
    network: network.prefault({}),
    tool: tool.prefault({}),
    shell: z.strictObject({ use_tmux: z.boolean().default(true) }).prefault({}),
    mounts: z.array(mount).default(() => []).describe('Extra host directories in the container.'),
    sockets: z.array(socket).default(() => []),
    ports: ports.prefault({}),
    credentials: z.array(credential).default(() => []),
    limits: limits.prefault({}),
    git: git.prefault({}),
    ssh: z.strictObject({ forward_agent: z.boolean().default(false) }).prefault({}),
    security: security.prefault({}),
    monitoring: monitoring.prefault({}),
    timezone: timezone.prefault({}),
    detection: detection.prefault({}),
    snapshots: z
      .strictObject({
        auto: z.boolean().default(false).describe('Take a snapshot when a session starts.'),
        keep: z.number().int().min(1).max(100).default(3).describe('Automatic snapshots kept per sandbox.'),
      })
      .prefault({}),
    pool: z.strictObject({ size: z.number().int().min(0).max(32).default(0).describe('Pre-started containers kept ready.') }).prefault({}),
  };

  const configSchema = z.strictObject(configShape);

  /** A profile's config.toml: the same keys, plus where it inherits from. */
  const profileSchema = z.strictObject({
    ...configShape,
    inherits: z.string().regex(PROFILE_NAME, { message: 'expected a profile name' }).optional().describe('Profile this one starts from.'),
    description: z.string().optional().describe('One line shown by `coi profile list`.'),
  });
  return { configSchema, profileSchema };
}

const schemas = once(buildSchemas);
type Schemas = ReturnType<typeof buildSchemas>;
export const configSchema = (): Schemas['configSchema'] => schemas().configSchema;
/** A profile's config.toml: the same keys, plus where it inherits from. */
export const profileSchema = (): Schemas['profileSchema'] => schemas().profileSchema;

/** The effective configuration, every key present. */
export type Config = z.output<Schemas['configSchema']>;
/** What one layer (a file, the environment, flags) may say: any subset of keys. */
export type ConfigPatch = z.input<Schemas['configSchema']>;
export type ProfilePatch = z.input<Schemas['profileSchema']>;
export type NetworkMode = Config['network']['mode'];
export type Limits = Config['limits'];

export function defaults(): Config {
  return configSchema().parse({});
}

/**
 * Checks that need more than one key, run on the merged result (one layer may
 * set the mode and another the name). Returns [path, message] pairs, the path
 * being the key whose setting asks for the missing or wrong one, so the error
 * points at the line the user wrote.
 */
export function crossFieldProblems(c: Config): Array<[Array<string | number>, string]> {
  const out: Array<[Array<string | number>, string]> = [];
  if (c.timezone.mode === 'fixed') {
    if (c.timezone.name === '') out.push([['timezone', 'mode'], 'timezone.mode = "fixed" needs timezone.name, e.g. "Europe/Berlin"']);
    else if (!isTimeZone(c.timezone.name)) out.push([['timezone', 'name'], `"${c.timezone.name}" is not an IANA time zone name, e.g. "Europe/Berlin"`]);
  }
  if (c.tool.name === 'custom' && c.tool.binary === '') out.push([['tool', 'name'], 'tool.name = "custom" needs tool.binary, the program to run']);
  return out;
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

// ── schema introspection (for "did you mean" and docs) ──────────────────────

type AnySchema = z.ZodType;
type Def = { type: string; innerType?: AnySchema; shape?: Record<string, AnySchema>; element?: AnySchema; valueType?: AnySchema; in?: AnySchema };

function defOf(s: AnySchema): Def {
  return (s as unknown as { _zod: { def: Def } })._zod.def;
}

/** Strips optional/default/prefault wrappers and refinements down to the structural schema. */
function unwrap(s: AnySchema): AnySchema {
  for (;;) {
    const d = defOf(s);
    if ((d.type === 'optional' || d.type === 'default' || d.type === 'prefault' || d.type === 'nullable' || d.type === 'readonly') && d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.in) s = d.in;
    else return s;
  }
}

/** The schema at a key path (array indices step into elements, any key steps into records), or undefined. */
export function schemaAt(root: AnySchema, path: ReadonlyArray<string | number>): AnySchema | undefined {
  let s: AnySchema | undefined = root;
  for (const seg of path) {
    if (!s) return undefined;
    const d = defOf(unwrap(s));
    if (d.type === 'object' && d.shape && typeof seg === 'string') s = d.shape[seg];
    else if (d.type === 'array' && d.element) s = d.element;
    else if (d.type === 'record' && d.valueType) s = d.valueType;
    else return undefined;
  }
  return s ? unwrap(s) : undefined;
}

/** Keys a strict table at this path accepts ([] when it is not a table). */
export function knownKeys(root: AnySchema, path: ReadonlyArray<string | number>): string[] {
  const s = schemaAt(root, path);
  if (!s) return [];
  const d = defOf(s);
  return d.type === 'object' && d.shape ? Object.keys(d.shape) : [];
}

/** Every table path of the schema with its keys, for "this key belongs in [container]" hints. */
export function allTables(root: AnySchema, prefix: string[] = []): Array<{ path: string[]; keys: string[] }> {
  const d = defOf(unwrap(root));
  if (d.type === 'array' && d.element) return allTables(d.element, prefix);
  if (d.type !== 'object' || !d.shape) return [];
  const out = [{ path: prefix, keys: Object.keys(d.shape) }];
  for (const [k, v] of Object.entries(d.shape)) out.push(...allTables(v, [...prefix, k]));
  return out;
}
