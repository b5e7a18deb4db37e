/**
 * A sandbox's network settings, recorded on its instance at creation as the
 * label `user.coi.network` (compact JSON). The guard reads them back from Incus
 * and from nowhere else: no client tells it what a sandbox may reach.
 *
 * Pure: built from the effective configuration (after the trust model dropped
 * what an untrusted project tried to loosen), encoded, and parsed again with
 * a strict schema. A label that does not parse is not guessed at: the guard
 * then blocks the sandbox's network entirely.
 */
import { z } from 'zod';
import { CoiError, ErrorCodes } from '../errors';

export const NETWORK_LABEL = 'user.coi.network';
/** Which guard fences the sandbox: empty for the host's guard, a scope for a test's own guard. */
export const GUARD_SCOPE_LABEL = 'user.coi.guard-scope';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const CIDR = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}(\/(3[0-2]|[12]?\d))?$/;
const DOMAIN = /^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

export const networkLabelSchema = z
  .object({
    v: z.literal(1),
    mode: z.enum(['restricted', 'allowlist', 'open']),
    /** restricted: RFC 1918 and the host's other addresses reachable. */
    allowLocal: z.boolean(),
    /** allowlist: IPv4 addresses and CIDRs. */
    cidrs: z.array(z.string().regex(CIDR)).max(1024),
    /** allowlist: names the guard resolves on the host. */
    domains: z.array(z.string().regex(DOMAIN).refine((d) => !/^[\d.]+$/.test(d))).max(256),
    /** allowlist: when not empty, only these TCP/UDP ports. */
    ports: z.array(z.number().int().min(1).max(65535)).max(256),
    /** allowlist: the longest time between two resolutions of a name. */
    refreshMin: z.number().int().min(1).max(7 * 24 * 60),
    /** Resolvers the guard asks for `domains` (config `network.dns_servers`); absent = the host's. */
    dns: z.array(z.string().regex(IPV4)).max(4).optional(),
    /** `block_metadata_endpoint = false`: 169.254.169.254 reachable in every mode. Absent = blocked. */
    metadata: z.literal(true).optional(),
    /**
     * `[[network.hosts]]`: written into /etc/hosts and reachable in every mode,
     * on `ports` when not empty (private or not). Absent = none.
     */
    hosts: z
      .array(
        z
          .object({
            ip: z.string().regex(IPV4),
            names: z.array(z.string().regex(DOMAIN)).min(1).max(16),
            ports: z.array(z.number().int().min(1).max(65535)).max(64),
          })
          .strict(),
      )
      .min(1)
      .max(64)
      .optional(),
    /**
     * `[network] backend = "firewalld"`: the guard expresses the mode as a
     * firewalld zone and policy, and the NIC has Incus's anti-spoofing on.
     * Absent = the guard's own nftables tables.
     */
    backend: z.literal('firewalld').optional(),
  })
  .strict();
export type NetworkLabel = z.infer<typeof networkLabelSchema>;

export const DEFAULT_NETWORK: NetworkLabel = { v: 1, mode: 'restricted', allowLocal: false, cidrs: [], domains: [], ports: [], refreshMin: 30 };

/** The parts of `[network]` this needs (the config schema's names). */
export interface NetworkConfig {
  mode: 'restricted' | 'allowlist' | 'open';
  block_private_networks: boolean;
  allow_local_network_access: boolean;
  allowed_domains: string[];
  allowed_ports: number[];
  refresh_interval_minutes: number;
  dns_servers: string[];
  block_metadata_endpoint: boolean;
  hosts: ReadonlyArray<{ ip: string; hostnames: string[]; ports: number[] }>;
  backend?: 'nftables' | 'firewalld';
}

/**
 * The label for a configuration, and what of it could not be honoured.
 * `allowed_domains` entries with a ":port" are left out (so not reachable at
 * all) rather than allowed on every port: per-entry ports are not enforced yet.
 * Fields at their defaults are left out, so the label of a default
 * configuration is the same as before they existed.
 */
export function networkLabelFromConfig(n: NetworkConfig): { label: NetworkLabel; warnings: string[] } {
  const warnings: string[] = [];
  const firewalld = n.backend === 'firewalld';
  if (firewalld && n.mode === 'allowlist') {
    // Refused rather than approximated: an allowlist needs its names' addresses kept current in firewalld, which is not built.
    throw new CoiError(ErrorCodes.INVALID_INPUT, 'network.mode = "allowlist" is not available with network.backend = "firewalld" yet (only restricted and open are): the sandbox is not started', {
      remedy: { title: 'Use the guard\'s own rules for allowlist sandboxes (they work beside firewalld), or restricted mode', shell: 'set [network] backend = "nftables" (or mode = "restricted") in .coi/config.toml' },
    });
  }
  const cidrs: string[] = [];
  const domains: string[] = [];
  if (n.mode === 'allowlist') {
    for (const raw of n.allowed_domains) {
      const entry = raw.trim();
      if (/:\d+$/.test(entry)) {
        warnings.push(`network.allowed_domains entry "${entry}" names a port, which is not supported yet: it is left out of the allowlist (use allowed_ports)`);
        continue;
      }
      if (CIDR.test(entry)) cidrs.push(entry);
      else if (DOMAIN.test(entry)) domains.push(entry.toLowerCase());
      else warnings.push(`network.allowed_domains entry "${entry}" is neither an IPv4 address, a CIDR nor a domain: left out`);
    }
  }
  const label: NetworkLabel = {
    v: 1,
    mode: n.mode,
    allowLocal: n.mode === 'restricted' && (n.allow_local_network_access || !n.block_private_networks),
    cidrs: [...new Set(cidrs)],
    domains: [...new Set(domains)],
    ports: n.mode === 'allowlist' ? [...new Set(n.allowed_ports)].sort((a, b) => a - b) : [],
    refreshMin: n.refresh_interval_minutes,
    ...(n.mode === 'allowlist' && n.dns_servers.length > 0 ? { dns: n.dns_servers.slice(0, 4) } : {}),
    ...(n.block_metadata_endpoint ? {} : { metadata: true as const }),
    ...hostsOf(n.hosts, warnings),
    ...(firewalld ? { backend: 'firewalld' as const } : {}),
  };
  return { label, warnings };
}

/** `[[network.hosts]]` entries, one per address (names and ports of duplicates merged; no ports on either = every port). */
function hostsOf(hosts: NetworkConfig['hosts'], warnings: string[]): Pick<NetworkLabel, 'hosts'> {
  const byIp = new Map<string, { names: Set<string>; ports: Set<number> | undefined }>();
  for (const h of hosts) {
    if (!IPV4.test(h.ip)) {
      warnings.push(`network.hosts entry ${JSON.stringify(h.ip)} is not an IPv4 address: left out`);
      continue;
    }
    const names = h.hostnames.map((n) => n.toLowerCase()).filter((n) => DOMAIN.test(n));
    if (names.length === 0) {
      warnings.push(`network.hosts entry ${h.ip} has no valid host name: left out`);
      continue;
    }
    const had = byIp.get(h.ip);
    const ports = h.ports.length === 0 ? undefined : new Set(h.ports);
    if (!had) byIp.set(h.ip, { names: new Set(names), ports });
    else {
      for (const n of names) had.names.add(n);
      had.ports = had.ports && ports ? new Set([...had.ports, ...ports]) : undefined;
    }
  }
  if (byIp.size === 0) return {};
  return {
    hosts: [...byIp.entries()].map(([ip, h]) => ({ ip, names: [...h.names].slice(0, 16), ports: h.ports ? [...h.ports].sort((a, b) => a - b) : [] })),
  };
}

export function encodeNetworkLabel(l: NetworkLabel): string {
  return JSON.stringify(networkLabelSchema.parse(l));
}

export type ParsedNetworkLabel = { ok: true; label: NetworkLabel; missing: boolean } | { ok: false; error: string };

/** The label of an instance's config: missing = the defaults (restricted); present but invalid = an error. */
export function parseNetworkLabel(value: string | undefined): ParsedNetworkLabel {
  if (value === undefined || value === '') return { ok: true, label: DEFAULT_NETWORK, missing: true };
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    return { ok: false, error: `${NETWORK_LABEL} is not JSON` };
  }
  const r = networkLabelSchema.safeParse(json);
  if (!r.success) return { ok: false, error: `${NETWORK_LABEL} is invalid: ${r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(label)'}: ${i.message}`).join('; ')}` };
  return { ok: true, label: r.data, missing: false };
}

/** COI_GUARD_SCOPE: a test's own guard fences only the sandboxes recorded with its scope. */
export function guardScopeOf(env: NodeJS.ProcessEnv): { guardScope?: string } {
  const scope = env.COI_GUARD_SCOPE;
  return scope ? { guardScope: scope } : {};
}
