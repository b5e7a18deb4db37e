/**
 * Gathering the facts `coi health` judges: the one part that talks to Incus,
 * the guard, /proc, /sys and host programs. Every probe catches its own
 * failure and records it as a fact, so one broken component never hides the
 * others.
 */
import { existsSync, promises as fs, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { Config, loadConfig, LoadedConfig } from '../config';
import { configSchema } from '../config/schema';
import { toCoiError } from '../errors';
import { GuardClient } from '../guard/client';
import { TRUSTED_ZONE, zoneBlocks } from '../guard/network/firewalld';
import { bridgeZoneFacts, firewallCmdExec, zoneInfo } from '../guard/network/firewalld-runner';
import { adminGroupName, guardSocketPath } from '../guard/paths';
import { parseGroupFile } from '../host/groups';
import { tryRun, which } from '../host/run';
import type { IncusClient } from '../incus/client';
import { defaultSocketPath } from '../incus/transport';
import type { ImageInfo, Network, Profile, StoragePool, StoragePoolResources } from '../incus/types';
import type { Log } from '../log';
import { GuardInfo } from '../protocol/methods';
import { RequestDef } from '../protocol/rpc';
import { managerByName } from '../sandbox/factory';
import { idmapMode, subidDelegates } from '../sandbox/idmap';
import { pidAlive } from '../sandbox/lock';
import { SETUP_NAMES } from '../setup/names';
import { COI_VERSION } from '../version';
import type { HealthFacts, LiveFacts, PoolFact } from './facts';
import { runLiveCheck } from './live';
import { chooseTarget } from './target';

export interface ProbeOptions {
  env: NodeJS.ProcessEnv;
  incus: IncusClient;
  log: Log;
  cwd: string;
  /** Start a temporary sandbox and probe from inside it. */
  live: boolean;
  /** --target */
  target?: string;
  progress?: (m: string) => void;
}

/**
 * guard/info, tolerant of what the guard reports about itself: older guards
 * list no capabilities, newer ones do ("network" once it enforces rules).
 */
const GuardInfoWithCapabilities: RequestDef<Record<string, never>, z.infer<typeof GuardInfo.result> & { capabilities?: string[] }> = {
  ...GuardInfo,
  result: z.intersection(GuardInfo.result, z.object({ capabilities: z.array(z.string()).optional() })),
};

export async function gatherFacts(o: ProbeOptions): Promise<HealthFacts> {
  const home = o.env.HOME || os.homedir();
  const uid = process.getuid?.() ?? 1000;
  const gid = process.getgid?.() ?? 1000;
  const userName = safe(() => os.userInfo().username, o.env.USER ?? String(uid));
  const { config, loaded } = await configFacts(o, home);
  const [incus, guard] = await Promise.all([incusFacts(o.incus), guardFacts(o.env)]);
  const reach = incus.reachable;
  const [pools, bridge, profiles, instances, image] = await Promise.all([
    reach ? poolFacts(o.incus) : Promise.resolve([]),
    reach ? bridgeFacts(o.incus) : Promise.resolve({ name: SETUP_NAMES.bridge, exists: false as const, error: 'Incus cannot be reached' }),
    reach ? o.incus.get<Profile[]>(o.incus.url('/1.0/profiles', { recursion: 1 })).catch(() => []) : Promise.resolve([]),
    reach ? o.incus.listInstances().catch(() => []) : Promise.resolve([]),
    reach ? imageFacts(o.incus, config.image) : Promise.resolve({ alias: config.image, error: 'Incus cannot be reached' }),
  ]);
  const socketPath = o.incus.endpoint.startsWith('unix:') ? o.incus.endpoint.slice(5) : defaultSocketPath(o.env);
  const group = adminGroupName(o.env);
  const groups = parseGroupFile(safe(() => readFileSync('/etc/group', 'utf8'), ''));
  const g = groups.get(group);
  const subuid = safe(() => readFileSync('/etc/subuid', 'utf8'), '');
  const subgid = safe(() => readFileSync('/etc/subgid', 'utf8'), '');
  const cfg = loaded?.config;
  // Under sudo, ids are checked for the user who will run sandboxes, so `sudo coi health --fix` delegates theirs.
  const sudo = uid === 0 && /^\d+$/.test(o.env.SUDO_UID ?? '') && /^\d+$/.test(o.env.SUDO_GID ?? '');
  const idUid = sudo ? Number(o.env.SUDO_UID) : uid;
  const idGid = sudo ? Number(o.env.SUDO_GID) : gid;
  const idmap = idmapMode(idUid, idGid, cfg?.incus.code_uid ?? 1000, cfg?.incus.code_uid ?? 1000, cfg?.incus.disable_shift ?? false);
  const facts: HealthFacts = {
    now: new Date(),
    helperVersion: COI_VERSION,
    kernelRelease: os.release(),
    user: { uid, name: userName, root: uid === 0 },
    config,
    incus,
    socket: socketFacts(socketPath),
    access: {
      group,
      groupExists: g !== undefined,
      inGroupFile: g !== undefined && (g.members.includes(userName) || g.gid === gid),
      inSession: g !== undefined && (process.getgroups?.() ?? []).includes(g.gid),
    },
    guard,
    pools,
    bridge,
    sysctl: {
      ...optional('ipForward', readTrim('/proc/sys/net/ipv4/ip_forward')),
      ...optional('bridgeNfCallIptables', readTrim('/proc/sys/net/bridge/bridge-nf-call-iptables')),
    },
    nft: await nftFacts(),
    firewalld: await firewalldFacts(SETUP_NAMES.bridge),
    lsm: {
      apparmor: readTrim('/sys/module/apparmor/parameters/enabled') === 'Y' || existsSync('/sys/kernel/security/apparmor'),
      seccomp: /^Seccomp:/m.test(safe(() => readFileSync('/proc/self/status', 'utf8'), '')),
    },
    profiles: profiles.map((p) => ({ name: p.name, config: p.config ?? {} })),
    instances: instances.map((i) => ({ name: i.name, config: i.config ?? {}, status: i.status })),
    image,
    idmap: { needed: idmap.kind === 'raw', uid: idUid, gid: idGid, uidDelegated: subidDelegates(subuid, idUid), gidDelegated: subidDelegates(subgid, idGid) },
    orphans: reach ? await orphanFacts(o, home, instances) : { sandboxes: [], veths: [], locks: [], error: 'Incus cannot be reached' },
    live: { ran: false, why: 'skipped (--no-live)' },
  };
  if (!o.live) return facts;
  if (!reach) facts.live = { ran: false, why: 'Incus cannot be reached' };
  else if (!loaded) facts.live = { ran: false, why: 'the configuration does not load' };
  else {
    const gw = await defaultGateway();
    const target = chooseTarget({ flag: o.target, env: o.env.COI_HEALTH_TARGET, bridgeMode: bridge.exists ? bridge.mode : undefined, defaultGateway: gw });
    facts.live = await runLiveCheck({ env: o.env, incus: o.incus, log: o.log, loaded, target, ...(o.progress ? { progress: o.progress } : {}) });
  }
  return facts;
}

async function configFacts(o: ProbeOptions, home: string): Promise<{ config: HealthFacts['config']; loaded?: LoadedConfig }> {
  const fallback: Config = configSchema().parse({});
  const image = o.env.COI_IMAGE || fallback.container.image;
  try {
    const loaded = await loadConfig({ home, workspace: safe(() => realpathSync(o.cwd), o.cwd), env: o.env });
    const c = loaded.config;
    const source = loaded.files.length ? loaded.files.join(', ') : 'built-in defaults';
    return { config: { ok: true, image: c.container.image, pool: c.container.storage_pool || SETUP_NAMES.pool, networkMode: c.network.mode, networkBackend: c.network.backend, source }, loaded };
  } catch (e) {
    return { config: { ok: false, error: toCoiError(e).message, image, pool: SETUP_NAMES.pool, networkMode: fallback.network.mode } };
  }
}

async function incusFacts(incus: IncusClient): Promise<HealthFacts['incus']> {
  try {
    const s = await incus.server({ timeoutMs: 5_000 });
    const env = s.environment as (NonNullable<typeof s.environment> & { firewall?: string }) | undefined;
    return { reachable: true, serverVersion: env?.server_version ?? 'unknown', apiVersion: s.api_version, endpoint: incus.endpoint, ...(env?.firewall ? { firewall: env.firewall } : {}) };
  } catch (e) {
    const err = toCoiError(e);
    return { reachable: false, endpoint: incus.endpoint, error: err.message, code: err.code };
  }
}

async function guardFacts(env: NodeJS.ProcessEnv): Promise<HealthFacts['guard']> {
  const socket = guardSocketPath(env);
  const client = new GuardClient({ socketPath: socket });
  try {
    await client.connect({ timeoutMs: 2_000 });
    const info = await client.request(GuardInfoWithCapabilities, {});
    return { reachable: true, socket, version: info.guard.version, pid: info.guard.pid, eventsConnected: info.eventsConnected, ...(info.capabilities ? { capabilities: info.capabilities } : {}) };
  } catch (e) {
    const error = toCoiError(e).message;
    return { reachable: false, socket, error, ...(/\b(EACCES|EPERM)\b/.test(error) ? { denied: true } : {}) };
  } finally {
    client.close();
  }
}

async function poolFacts(incus: IncusClient): Promise<PoolFact[]> {
  const pools = await incus.get<StoragePool[]>(incus.url('/1.0/storage-pools', { recursion: 1 })).catch(() => []);
  return Promise.all(
    pools.map(async (p) => {
      const f: PoolFact = { name: p.name, driver: p.driver, ...(p.status ? { status: p.status } : {}) };
      if (p.driver === 'lvm') f.thin = (p.config['lvm.use_thinpool'] ?? 'true') !== 'false';
      try {
        const r = await incus.get<StoragePoolResources>(incus.url(`/1.0/storage-pools/${encodeURIComponent(p.name)}/resources`));
        f.total = r.space.total;
        f.used = r.space.used;
      } catch (e) {
        f.error = toCoiError(e).message;
      }
      return f;
    }),
  );
}

async function bridgeFacts(incus: IncusClient): Promise<HealthFacts['bridge']> {
  const name = SETUP_NAMES.bridge;
  try {
    const n = await incus.get<Network>(incus.url(`/1.0/networks/${name}`));
    const state = await incus.get<{ state?: string }>(incus.url(`/1.0/networks/${name}/state`)).catch(() => undefined);
    const mode = n.config['user.coi.mode'] === 'dead-end' ? 'dead-end' : n.config['user.coi.mode'] === 'nat' ? 'nat' : 'unknown';
    const address = n.config['ipv4.address'];
    return { name, exists: true, managed: n.managed, mode, nat: n.config['ipv4.nat'] === 'true', ...(address && address !== 'none' ? { address } : {}), ...(state?.state ? { state: state.state } : {}) };
  } catch (e) {
    return { name, exists: false, error: toCoiError(e).message };
  }
}

async function imageFacts(incus: IncusClient, alias: string): Promise<HealthFacts['image']> {
  try {
    const fp = await incus.imageAlias(alias);
    if (!fp) return { alias };
    const info: ImageInfo = await incus.getImage(fp);
    return { alias, fingerprint: fp, createdAt: info.created_at, uploadedAt: info.uploaded_at };
  } catch (e) {
    return { alias, error: toCoiError(e).message };
  }
}

function socketFacts(p: string): HealthFacts['socket'] {
  try {
    const st = statSync(p);
    return { path: p, exists: true, mode: st.mode & 0o777, gid: st.gid };
  } catch {
    return { path: p, exists: false };
  }
}

async function nftFacts(): Promise<HealthFacts['nft']> {
  const p = await which('nft');
  if (!p) return {};
  const v = await tryRun(p, ['--version'], { timeoutMs: 5_000 }).catch((e: unknown) => ({ stdout: '', stderr: toCoiError(e).message, exitCode: -1 }));
  return { path: p, ...(v.exitCode === 0 ? { version: v.stdout.trim() } : { error: v.stderr.trim() }) };
}

async function firewalldFacts(bridge: string): Promise<HealthFacts['firewalld']> {
  const running = processRunning('firewalld');
  if (!running) return { running: false };
  const cmd = await which('firewall-cmd');
  if (!cmd) return { running: true, error: 'firewall-cmd not found' };
  const exec = firewallCmdExec(cmd);
  try {
    // Read only: the guard changes zones, health merely says what they do.
    const f = await bridgeZoneFacts(exec, bridge);
    const zone = f.runtimeZone ?? f.defaultZone;
    if (!zone) return { running: true, error: 'firewall-cmd names no default zone (is firewalld answering on D-Bus?)' };
    const info = zone === TRUSTED_ZONE ? undefined : await zoneInfo(exec, zone);
    const blocks = zone === TRUSTED_ZONE ? [] : info ? zoneBlocks(info) : [`everything it cannot be asked about (firewall-cmd --info-zone=${zone} failed)`];
    return { running: true, zoneOfBridge: zone, explicit: f.runtimeZone !== undefined, blocks };
  } catch (e) {
    return { running: true, error: toCoiError(e).message };
  }
}

function processRunning(comm: string): boolean {
  for (const d of safe(() => readdirSync('/proc'), [] as string[])) {
    if (!/^\d+$/.test(d)) continue;
    if (readTrim(`/proc/${d}/comm`) === comm) return true;
  }
  return false;
}

async function defaultGateway(): Promise<string | undefined> {
  const r = await tryRun('ip', ['-4', '-j', 'route', 'show', 'default'], { timeoutMs: 5_000 }).catch(() => undefined);
  try {
    return (JSON.parse(r?.stdout ?? '[]') as { gateway?: string }[])[0]?.gateway;
  } catch {
    return undefined;
  }
}

/**
 * Ours and left behind: sandboxes `coi clean` would remove, host veths named
 * like ours that no bridge and no container claims, and launch locks whose
 * process is gone.
 */
async function orphanFacts(o: ProbeOptions, home: string, instances: { config: Record<string, string>; expanded_devices?: Record<string, Record<string, string>>; devices: Record<string, Record<string, string>> }[]): Promise<HealthFacts['orphans']> {
  const out: HealthFacts['orphans'] = { sandboxes: [], veths: [], locks: [] };
  try {
    out.sandboxes = await managerByName({ env: o.env, incus: o.incus, log: o.log, warn: () => undefined }).cleanable();
  } catch (e) {
    out.error = toCoiError(e).message;
  }
  const claimed = new Set<string>();
  for (const i of instances) {
    for (const d of Object.values({ ...(i.devices ?? {}), ...(i.expanded_devices ?? {}) })) if (d.host_name) claimed.add(d.host_name);
    for (const [k, v] of Object.entries(i.config ?? {})) if (/^volatile\..*\.host_name$/.test(k)) claimed.add(v);
  }
  for (const n of safe(() => readdirSync('/sys/class/net'), [] as string[])) {
    if (!/^coi[0-9a-f]{11}$/.test(n) || claimed.has(n)) continue;
    if (!existsSync(`/sys/class/net/${n}/master`)) out.veths.push(n);
  }
  const lockDir = path.join(home, '.coi', 'locks');
  for (const f of safe(() => readdirSync(lockDir), [] as string[])) {
    if (!f.endsWith('.lock')) continue;
    const pid = Number(readTrim(path.join(lockDir, f)) ?? '');
    if (!pid || !pidAlive(pid)) out.locks.push(path.join(lockDir, f));
  }
  return out;
}

export async function removeFile(p: string): Promise<void> {
  await fs.rm(p, { force: true });
}

function readTrim(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function optional<K extends string>(k: K, v: string | undefined): Partial<Record<K, string>> {
  return v === undefined ? {} : ({ [k]: v } as Record<K, string>);
}

function safe<T>(f: () => T, fallback: T): T {
  try {
    return f();
  } catch {
    return fallback;
  }
}

export type { LiveFacts };
