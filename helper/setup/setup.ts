/**
 * `coi setup`: makes this host ready, idempotently, saying for each step what it
 * did or why it skipped it. Run twice, the second run changes nothing.
 *
 * Steps: Incus installed → daemon running → storage pool → sandbox bridge →
 * (tests) dead-end network → default profile devices → base image → guard.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, openSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import { startGuardDaemon } from '../guard/daemon';
import { delegateId } from '../guard/subid';
import { parseGroupFile } from '../host/groups';
import { IncusClient } from '../incus/client';
import type { Network, Profile, StoragePool } from '../incus/types';
import { run, tryRun, which } from '../host/run';
import { aptMirror, baseImageRecipe, BaseImageRecipe, imageMetadata } from './image-recipe';
import { incusInstallPlan, parseOsRelease } from './install';
import { SETUP_NAMES } from './names';
import { bridgeConfig, configDiff, dnsQueryLogPath, deadEndForwardDrop, deadEndNamespaceCommands, pickSubnet, Subnet, subnetFromBridgeAddress } from './network';

export interface SetupOptions {
  /** Tests and CI: no NAT, a gateway namespace that forwards nothing. */
  deadEndNetwork: boolean;
  poolSize: string;
  image: boolean;
  rebuildImage: boolean;
  guard: boolean;
  cacheDir: string;
}

export interface SetupContext {
  env: NodeJS.ProcessEnv;
  incus: IncusClient;
  /** One line per step outcome. */
  report: (line: string) => void;
  /** Progress of long steps (debootstrap, import). */
  progress: (line: string) => void;
}

export const DEFAULT_SETUP: SetupOptions = {
  deadEndNetwork: false,
  poolSize: '30GiB',
  image: true,
  rebuildImage: false,
  guard: true,
  cacheDir: '/var/cache/coi',
};

export async function setupHost(opts: SetupOptions, ctx: SetupContext): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new CoiError(ErrorCodes.NOT_PERMITTED, 'set-up installs packages and configures the network: run it as root', {
      remedy: { title: 'Run it with sudo', shell: 'sudo coi setup' },
    });
  }
  const did = (what: string) => ctx.report(`+ ${what}`);
  const skip = (what: string) => ctx.report(`= ${what}`);

  await ensureIncusInstalled(ctx, did, skip);
  await ensureDaemon(ctx, did, skip);
  await ensurePool(opts, ctx, did, skip);
  const subnet = await ensureBridge(opts, ctx, did, skip);
  if (opts.deadEndNetwork) await ensureDeadEnd(subnet, did, skip);
  await ensureDefaultProfile(ctx, did, skip);
  await ensureIdDelegation(ctx, did, skip);
  if (opts.image) await ensureBaseImage(opts, ctx, did, skip);
  else skip('base image: skipped (--no-image)');
  if (opts.guard) {
    const g = await startGuardDaemon(ctx.env);
    const what = g.alreadyRunning ? 'already running' : g.replaced ? `replaced the guard of another build (was pid ${g.replaced.pid}), started` : 'started';
    (g.alreadyRunning ? skip : did)(`guard: ${what} (pid ${g.pid}, ${g.socketPath})`);
  } else skip('guard: not started (--no-guard)');
}

/** Programs set-up and the guard rely on, with the Debian package that brings each. */
const HOST_TOOLS: [program: string, pkg: string][] = [
  ['nft', 'nftables'],
  ['debootstrap', 'debootstrap'],
  ['mkfs.btrfs', 'btrfs-progs'],
  ['tmux', 'tmux'],
  ['ip', 'iproute2'],
  ['ss', 'iproute2'],
];

async function ensureIncusInstalled(ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  if (await incusdPath()) {
    const missing: string[] = [];
    for (const [program, pkg] of HOST_TOOLS) if (!(await which(program)) && !missing.includes(pkg)) missing.push(pkg);
    if (missing.length === 0) {
      skip('incus and host tools: installed');
      return;
    }
    ctx.progress(`apt-get install ${missing.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } as Record<string, string>;
    await run('apt-get', ['update', '-o', 'DPkg::Lock::Timeout=600'], { env, timeoutMs: 600_000 });
    await run('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=600', '--no-install-recommends', ...missing], { env, timeoutMs: 1_200_000 });
    did(`host tools: installed ${missing.join(', ')}`);
    return;
  }
  const os = parseOsRelease(await fs.readFile('/etc/os-release', 'utf8').catch(() => ''));
  let plan;
  try {
    plan = incusInstallPlan(os, aptMirror(ctx.env, readAptSources()));
  } catch (e) {
    throw new CoiError(ErrorCodes.SETUP_FAILED, (e as Error).message);
  }
  if (plan.source && !existsSync(plan.source.path)) await fs.writeFile(plan.source.path, plan.source.content);
  for (const args of plan.apt) {
    ctx.progress(`apt-get ${args.join(' ')}`);
    await run('apt-get', args, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } as Record<string, string>, timeoutMs: 1_200_000 });
  }
  if (!(await incusdPath())) throw new CoiError(ErrorCodes.SETUP_FAILED, 'Incus packages installed but incusd is still missing');
  did('incus: installed from Debian packages');
}

async function incusdPath(): Promise<string | undefined> {
  if (existsSync('/usr/libexec/incus/incusd')) return '/usr/libexec/incus/incusd';
  return which('incusd');
}

async function ensureDaemon(ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const version = await ctx.incus.server({ timeoutMs: 5_000 }).then((s) => s.environment?.server_version, () => undefined);
  if (version) {
    skip(`incus daemon: running (${version})`);
    return;
  }
  if (existsSync('/run/systemd/system')) {
    await run('systemctl', ['enable', '--now', 'incus.socket', 'incus.service'], { timeoutMs: 120_000 });
  } else {
    const bin = await incusdPath();
    if (!bin) throw new CoiError(ErrorCodes.SETUP_FAILED, 'incusd not found');
    // No service manager (containers, CI): run it detached, logging to a file.
    const fd = openSync('/var/log/incusd.log', 'a');
    spawn(bin, ['--group', 'incus-admin', '--logfile', '/var/log/incusd.log'], { detached: true, stdio: ['ignore', fd, fd] }).unref();
  }
  const deadline = Date.now() + 90_000;
  for (;;) {
    const v = await ctx.incus.server({ timeoutMs: 5_000 }).then((s) => s.environment?.server_version, () => undefined);
    if (v) {
      did(`incus daemon: started (${v})`);
      return;
    }
    if (Date.now() > deadline) throw new CoiError(ErrorCodes.SETUP_FAILED, 'incusd did not become ready within 90 s; see /var/log/incusd.log');
    await sleep(250);
  }
}

async function ensurePool(opts: SetupOptions, ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const existing = await getOrUndefined(() => ctx.incus.get<StoragePool>(ctx.incus.url(`/1.0/storage-pools/${SETUP_NAMES.pool}`)));
  if (existing) {
    skip(`storage pool ${SETUP_NAMES.pool}: present (${existing.driver}${existing.driver === 'dir' ? ', slow: every launch copies the image' : ''})`);
    return;
  }
  const btrfs = readFileSync('/proc/filesystems', 'utf8').includes('btrfs') && (await which('mkfs.btrfs')) !== undefined;
  const body = btrfs
    ? { name: SETUP_NAMES.pool, driver: 'btrfs', config: { size: opts.poolSize }, description: 'COI sandboxes' }
    : { name: SETUP_NAMES.pool, driver: 'dir', config: {}, description: 'COI sandboxes' };
  await ctx.incus.run('POST', ctx.incus.url('/1.0/storage-pools'), body, { timeoutMs: 300_000 });
  did(`storage pool ${SETUP_NAMES.pool}: created (${body.driver}${btrfs ? `, ${opts.poolSize} loop file` : '; btrfs unavailable, launches will be slow'})`);
}

async function ensureBridge(opts: SetupOptions, ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<Subnet> {
  const existing = await getOrUndefined(() => ctx.incus.get<Network>(ctx.incus.url(`/1.0/networks/${SETUP_NAMES.bridge}`)));
  const mode = opts.deadEndNetwork ? 'dead-end (no NAT, test gateway)' : 'NAT';
  if (existing) {
    const subnet = subnetFromBridgeAddress(existing.config['ipv4.address']) ?? pickSubnet(await hostRoutes());
    const want = bridgeConfig(subnet, opts.deadEndNetwork, queryLogPath(ctx.env));
    // Keys that only one mode uses must go when switching modes.
    const stale = Object.keys(existing.config).filter((k) => ['ipv4.routing', 'ipv4.dhcp.ranges', 'raw.dnsmasq'].includes(k) && !(k in want));
    const diff = configDiff(existing.config, want);
    if (Object.keys(diff).length === 0 && stale.length === 0) {
      skip(`bridge ${SETUP_NAMES.bridge}: present (${subnet.host}/${subnet.prefix}, ${mode})`);
      return subnet;
    }
    const config = { ...existing.config, ...want };
    for (const k of stale) delete config[k];
    await ctx.incus.run('PUT', ctx.incus.url(`/1.0/networks/${SETUP_NAMES.bridge}`), { config, description: 'COI sandboxes' });
    did(`bridge ${SETUP_NAMES.bridge}: updated ${[...Object.keys(diff), ...stale].join(', ')} (${mode})`);
    return subnet;
  }
  const subnet = pickSubnet(await hostRoutes());
  await ctx.incus.run('POST', ctx.incus.url('/1.0/networks'), {
    name: SETUP_NAMES.bridge,
    type: 'bridge',
    config: bridgeConfig(subnet, opts.deadEndNetwork, queryLogPath(ctx.env)),
    description: 'COI sandboxes',
  });
  did(`bridge ${SETUP_NAMES.bridge}: created (${subnet.host}/${subnet.prefix}, ${mode})`);
  return subnet;
}

/** incusd runs on this host (set-up runs beside it), so its directory is INCUS_DIR or the default. */
function queryLogPath(env: NodeJS.ProcessEnv): string {
  return dnsQueryLogPath(SETUP_NAMES.bridge, env.INCUS_DIR || '/var/lib/incus');
}

async function hostRoutes(): Promise<string[]> {
  const r = await tryRun('ip', ['-4', '-j', 'route', 'show', 'table', 'all']);
  try {
    return (JSON.parse(r.stdout) as { dst?: string }[]).map((x) => x.dst ?? '').filter((d) => /^\d/.test(d));
  } catch {
    return [];
  }
}

async function ensureDeadEnd(subnet: Subnet, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const ns = SETUP_NAMES.deadEndNamespace;
  const namespaces = (await tryRun('ip', ['netns', 'list'])).stdout;
  const veth = await tryRun('ip', ['link', 'show', SETUP_NAMES.deadEndVeth]);
  const present = {
    namespace: namespaces.split('\n').some((l) => l.split(' ')[0] === ns),
    veth: veth.exitCode === 0,
  };
  const wasComplete =
    present.namespace &&
    veth.stdout.includes(`master ${SETUP_NAMES.bridge}`) &&
    (await tryRun('nft', ['list', 'table', 'inet', SETUP_NAMES.deadEndTable])).exitCode === 0;
  // Re-applied every time (each command is idempotent): incusd may have recreated the bridge.
  for (const args of deadEndNamespaceCommands(subnet, present)) await run('ip', args);
  await run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
  await run('nft', ['-f', '-'], { input: deadEndForwardDrop() });
  (wasComplete ? skip : did)(`dead-end network: ${ns} is the sandboxes' gateway (${subnet.deadEndGateway}); nothing is forwarded beyond ${SETUP_NAMES.bridge}`);
}

/**
 * Workspaces of users whose uid is not the container's (1000) are mapped with
 * raw.idmap, which Incus allows only for ids delegated to root. Delegate root,
 * the user who ran sudo and the admin group's members now; the guard delegates
 * anyone else's own ids on request.
 */
async function ensureIdDelegation(ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const ids = new Map<number, number>([[0, 0]]);
  const sudoUid = Number(ctx.env.SUDO_UID);
  const sudoGid = Number(ctx.env.SUDO_GID);
  if (Number.isInteger(sudoUid) && Number.isInteger(sudoGid)) ids.set(sudoUid, sudoGid);
  const passwd = readFileSync('/etc/passwd', 'utf8');
  const admins = parseGroupFile(readFileSync('/etc/group', 'utf8')).get('incus-admin')?.members ?? [];
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] && admins.includes(f[0])) ids.set(Number(f[2]), Number(f[3]));
  }
  const changed: string[] = [];
  for (const [uid, gid] of ids) {
    if (uid === 1000 && gid === 1000) continue; // mapped with shift=true, nothing to delegate
    const u = await delegateId('/etc/subuid', uid);
    const g = await delegateId('/etc/subgid', gid);
    if (u || g) changed.push(`${uid}:${gid}`);
  }
  if (changed.length) did(`id delegation for raw.idmap: ${changed.join(', ')}`);
  else skip(`id delegation for raw.idmap: ${[...ids.keys()].join(', ')} already delegated`);
}

async function ensureDefaultProfile(ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const profile = await ctx.incus.get<Profile>(ctx.incus.url('/1.0/profiles/default'));
  const devices = { ...profile.devices };
  const added: string[] = [];
  if (!Object.values(devices).some((d) => d.type === 'disk' && d.path === '/')) {
    devices.root = { type: 'disk', path: '/', pool: SETUP_NAMES.pool };
    added.push('root disk');
  }
  if (!Object.values(devices).some((d) => d.type === 'nic')) {
    devices.eth0 = { type: 'nic', name: 'eth0', network: SETUP_NAMES.bridge };
    added.push('eth0');
  }
  if (added.length === 0) {
    skip('default profile: has a root disk and a network device');
    return;
  }
  await ctx.incus.run('PATCH', ctx.incus.url('/1.0/profiles/default'), { devices });
  did(`default profile: added ${added.join(' and ')}`);
}

async function ensureBaseImage(opts: SetupOptions, ctx: SetupContext, did: (s: string) => void, skip: (s: string) => void): Promise<void> {
  const recipe = baseImageRecipe(aptMirror(ctx.env, readAptSources()));
  const current = await ctx.incus.imageAlias(SETUP_NAMES.baseImage);
  if (current && !opts.rebuildImage) {
    const info = await ctx.incus.getImage(current);
    if (info.properties['coi.recipe'] === recipe.hash) {
      skip(`base image ${SETUP_NAMES.baseImage}: present (${current.slice(0, 12)}, recipe ${recipe.hash})`);
      return;
    }
  }
  const imagesDir = path.join(opts.cacheDir, 'images');
  await fs.mkdir(imagesDir, { recursive: true });
  const tarball = path.join(imagesDir, `${SETUP_NAMES.baseImage}-${recipe.hash}.tar`);
  let built = false;
  if (!existsSync(tarball) || opts.rebuildImage) {
    await buildBaseTarball(recipe, opts.cacheDir, tarball, ctx);
    built = true;
  }
  const fingerprint = await sha256File(tarball);
  const known = await getOrUndefined(() => ctx.incus.getImage(fingerprint));
  if (!known) {
    ctx.progress(`importing ${tarball}`);
    await ctx.incus.importImage(tarball, { timeoutMs: 900_000 });
  }
  await ctx.incus.setImageAlias(SETUP_NAMES.baseImage, fingerprint, `COI base image (Debian ${recipe.suite}, offline)`);
  did(`base image ${SETUP_NAMES.baseImage}: ${built ? 'built with debootstrap and imported' : `imported from the cache ${tarball}`} (${fingerprint.slice(0, 12)})`);
}

/**
 * debootstrap into a scratch folder, customise in a chroot, and pack a unified
 * image tarball. The tarball is written under a temporary name and renamed, so
 * an interrupted build never leaves a cache entry that looks complete.
 */
async function buildBaseTarball(recipe: BaseImageRecipe, cacheDir: string, tarball: string, ctx: SetupContext): Promise<void> {
  if (!(await which('debootstrap'))) {
    throw new CoiError(ErrorCodes.SETUP_FAILED, 'debootstrap is needed to build the base image offline', { remedy: { title: 'Install it', shell: 'sudo apt-get install -y debootstrap' } });
  }
  for (const stale of readdirSync(cacheDir).filter((n) => n.startsWith('build-'))) {
    await fs.rm(path.join(cacheDir, stale), { recursive: true, force: true });
  }
  const work = await fs.mkdtemp(path.join(cacheDir, 'build-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    ctx.progress(`debootstrap ${recipe.suite} from ${recipe.mirror} (about a minute)`);
    let lines = 0;
    await run('debootstrap', ['--variant=minbase', `--include=${recipe.packages.join(',')}`, recipe.suite, rootfs, recipe.mirror], {
      timeoutMs: 1_800_000,
      onLine: (l) => {
        if (++lines % 50 === 0 || /^E:|error/i.test(l)) ctx.progress(`debootstrap: ${l}`);
      },
    });
    ctx.progress('customising the image (user code, tmux, DHCP)');
    await run('chroot', [rootfs, '/bin/bash', '-c', recipe.customise], { timeoutMs: 600_000 });
    await fs.writeFile(path.join(work, 'metadata.yaml'), imageMetadata(recipe, new Date()));
    ctx.progress('packing the image');
    await run('tar', ['--numeric-owner', '-C', work, '-cf', `${tarball}.partial`, 'metadata.yaml', 'rootfs'], { timeoutMs: 600_000 });
    await fs.rename(`${tarball}.partial`, tarball);
  } catch (e) {
    await fs.rm(`${tarball}.partial`, { force: true });
    throw toCoiError(e);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file).on('data', (c) => h.update(c)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
  });
}

function readAptSources(): string[] {
  const out: string[] = [];
  for (const f of ['/etc/apt/sources.list']) if (existsSync(f)) out.push(readFileSync(f, 'utf8'));
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) for (const n of readdirSync(dir).filter((n) => /\.(list|sources)$/.test(n))) out.push(readFileSync(path.join(dir, n), 'utf8'));
  return out;
}

async function getOrUndefined<T>(f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) return undefined;
    throw e;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
