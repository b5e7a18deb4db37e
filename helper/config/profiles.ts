/**
 * Profiles: named configuration patches in `<dir>/profiles/<name>/config.toml`
 * (user, project, and beside $COI_CONFIG), plus the built-ins `default` and
 * `hardened`. A profile may inherit another (up to 10 levels); the chain is
 * merged parent first with the inheritance rules of merge.ts.
 */
import { CoiError, ErrorCodes } from '../errors';
import type { Config, ConfigPatch } from './schema';
import type { KeyIndex } from './toml';

export type ProfileScope = 'builtin' | 'user' | 'project' | 'coi-config';

export const MAX_INHERITANCE = 10;

export interface ProfileContext {
  profile: string;
  file: string;
  text: string;
}

export interface ProfileDef {
  name: string;
  scope: ProfileScope;
  /** The profile's config.toml (absent for built-ins). */
  file?: string;
  index?: KeyIndex;
  inherits?: string;
  description?: string;
  /** The profile's own settings (without inherits/description). */
  patch?: ConfigPatch;
  /** Built-ins compute their patch from what lies below them. */
  compute?: (below: Config) => ConfigPatch;
  context?: ProfileContext;
}

/** Secret files the hardened profile hides from the container (reference §2.5). */
export const HARDENED_SECRET_PATHS = [
  '.env',
  '*.pem',
  '*.key',
  '*.p12',
  'id_rsa',
  'id_ed25519',
  '*.tfvars',
  '*.tfstate',
  '.npmrc',
  '.netrc',
  '.git-credentials',
  'credentials.json',
  'service_account.json',
  'kubeconfig',
  'database.yml',
  'secrets/**',
];

export function builtinProfiles(): ProfileDef[] {
  return [
    { name: 'default', scope: 'builtin', description: 'The configuration as the files and environment give it', patch: {} },
    {
      name: 'hardened',
      scope: 'builtin',
      description: 'Restricted network, secrets hidden, monitoring on, ephemeral, 4 h limit',
      compute: (below) => ({
        // Never loosen: an allowlist the user chose stays, and keeps its provenance.
        network: {
          ...(below.network.mode === 'allowlist' ? {} : { mode: 'restricted' as const }),
          block_private_networks: true,
          block_metadata_endpoint: true,
          allow_local_network_access: false,
        },
        container: { persistent: false },
        ssh: { forward_agent: false },
        security: {
          secret_paths: [...new Set([...below.security.secret_paths, ...HARDENED_SECRET_PATHS])],
          host_immutable: true,
          reduce_kernel_surface: true,
        },
        monitoring: { enabled: true, nft: { enabled: true } },
        limits: { runtime: { max_duration: '4h' } },
      }),
    },
  ];
}

function where(p: ProfileDef): string {
  return p.file ?? `built-in profile "${p.name}"`;
}

/** Name → profile. The same name in two places is an error naming both: no silent shadowing. */
export function profileRegistry(defs: readonly ProfileDef[]): Map<string, ProfileDef> {
  const reg = new Map<string, ProfileDef>();
  for (const d of defs) {
    const prev = reg.get(d.name);
    if (prev) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `profile "${d.name}" is defined twice: ${where(prev)} and ${where(d)}`, {
        remedy: { title: `Rename or remove one of them${prev.scope === 'builtin' ? ` (${d.name} is built in)` : ''}` },
        details: { profile: d.name, files: [where(prev), where(d)] },
      });
    }
    reg.set(d.name, d);
  }
  return reg;
}

/** The inheritance chain of `name`, root ancestor first. */
export function profileChain(reg: ReadonlyMap<string, ProfileDef>, name: string): ProfileDef[] {
  const chain: ProfileDef[] = [];
  let cur: string | undefined = name;
  let from: ProfileDef | undefined;
  while (cur !== undefined) {
    const p = reg.get(cur);
    if (!p) {
      const known = [...reg.keys()].sort().join(', ');
      throw new CoiError(
        ErrorCodes.NOT_FOUND,
        from ? `${from.file ?? from.name}: profile "${from.name}" inherits "${cur}", which does not exist (profiles: ${known})` : `no profile "${cur}" (profiles: ${known})`,
        { remedy: { title: 'List the profiles', shell: 'coi profile list' } },
      );
    }
    if (chain.includes(p)) {
      const cycle = [...chain.slice(chain.indexOf(p)), p].map((x) => x.name).join(' → ');
      throw new CoiError(ErrorCodes.INVALID_INPUT, `profile inheritance cycle: ${cycle}`, { remedy: { title: `Remove one "inherits" in ${where(p)}` }, details: { cycle } });
    }
    if (chain.length > MAX_INHERITANCE) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `profile "${name}" inherits more than ${MAX_INHERITANCE} levels deep (${chain.map((x) => x.name).join(' → ')} → …)`, {
        remedy: { title: 'Flatten the profile chain' },
      });
    }
    chain.push(p);
    from = p;
    cur = p.inherits;
  }
  return chain.reverse();
}
