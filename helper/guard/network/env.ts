/**
 * The guard's network settings from its environment. Production needs none of
 * them; they exist so a test can run a guard of its own beside the host's
 * without either touching the other's sandboxes or rules, and without ever
 * asking the host's resolvers about test names.
 *
 *   COI_GUARD_SCOPE        fence only instances labelled user.coi.guard-scope=<scope>,
 *                          in tables coi_guard_<scope> / coi_guard_ingress_<scope>
 *                          (the `coi` launching them must have the same variable)
 *   COI_DNS_RESOLVER       resolver(s) for allowlist names, "ip" or "ip:port", comma-separated;
 *                          overrides every sandbox's [network] dns_servers and the host's resolv.conf
 *   COI_NET_CACHE_DIR      allowlist cache (default /var/lib/coi/network-cache, a scope gets a subdirectory)
 *   COI_NET_STATE_DIR      where the rendered ruleset is written for nft (default /run/coi/network)
 *   COI_NET_TTL_FLOOR_SEC  least DNS TTL honoured (default 60; tests lower it to see a refresh in seconds)
 *   COI_NET_GRACE_SEC      how long an address outlives its TTL for new connections (default 600)
 *   COI_NFT                the nft program (default: nft on PATH); tests wrap it to stall an apply
 */
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../../errors';
import { nodeResolve4 } from './allowlist';
import { firewallCmdExec } from './firewalld-runner';
import { nftExec } from './nft';
import type { NetworkControllerOptions } from './controller';
import { tablesFor, validScope } from './names';

export const DEFAULT_CACHE_DIR = '/var/lib/coi/network-cache';
export const DEFAULT_STATE_DIR = '/run/coi/network';

function seconds(env: NodeJS.ProcessEnv, key: string, dflt: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d{1,6}$/.test(raw)) throw new CoiError(ErrorCodes.INVALID_INPUT, `${key} must be a whole number of seconds, not ${JSON.stringify(raw)}`);
  return Number(raw);
}

const RESOLVER = /^(\d{1,3}(\.\d{1,3}){3})(:\d{1,5})?$/;

export function networkOptionsFromEnv(env: NodeJS.ProcessEnv): { scope: string; tablesNote: string; options: Omit<NetworkControllerOptions, 'incus' | 'log' | 'onPacket'> } {
  const scope = env.COI_GUARD_SCOPE ?? '';
  if (scope && !validScope(scope)) throw new CoiError(ErrorCodes.INVALID_INPUT, `COI_GUARD_SCOPE must be 1-12 of a-z 0-9, not ${JSON.stringify(scope)}`);
  const resolvers = (env.COI_DNS_RESOLVER ?? '').split(',').map((x) => x.trim()).filter(Boolean);
  for (const r of resolvers) if (!RESOLVER.test(r)) throw new CoiError(ErrorCodes.INVALID_INPUT, `COI_DNS_RESOLVER: ${JSON.stringify(r)} is not "ip" or "ip:port"`);
  const cacheBase = env.COI_NET_CACHE_DIR || DEFAULT_CACHE_DIR;
  const stateBase = env.COI_NET_STATE_DIR || DEFAULT_STATE_DIR;
  const t = tablesFor(scope);
  return {
    scope,
    tablesNote: `${t.filter} and ${t.ingress}`,
    options: {
      scope,
      cacheDir: scope && !env.COI_NET_CACHE_DIR ? path.join(cacheBase, `scope-${scope}`) : cacheBase,
      stateDir: scope && !env.COI_NET_STATE_DIR ? `${stateBase}-${scope}` : stateBase,
      resolve4: nodeResolve4(),
      ...(env.COI_NFT ? { nft: nftExec({ binary: env.COI_NFT }) } : {}),
      ...(resolvers.length ? { resolvers } : {}),
      firewalld: firewallCmdExec(),
      timing: { floorSec: Math.max(1, seconds(env, 'COI_NET_TTL_FLOOR_SEC', 60)), graceSec: seconds(env, 'COI_NET_GRACE_SEC', 600) },
    },
  };
}
