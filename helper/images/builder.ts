/**
 * `coi build`: the default agent image and custom images, with progress,
 * cancellation and nothing left behind.
 *
 * What a build may leave, and who removes it:
 * - a temporary container (labelled `user.coi.build=<id>`, `user.coi.build-pid`),
 * - a scratch folder `<cache>/build-<id>` (the rootfs, partial tarballs),
 * - an imported or published image not yet aliased (property `coi.build-id`).
 * A build removes them itself when it fails or is cancelled. When coi is
 * killed outright, a watchdog process started with the build (see reaper.ts)
 * sees it die and removes them; `coi clean` and the next build remove any
 * whose builder is gone. The cache only ever receives complete files, by
 * rename. Aliases move only after the image is complete: first the version
 * alias, then the main alias in one call.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, promises as fs, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import { run } from '../host/run';
import type { IncusClient } from '../incus/client';
import { execStream } from '../incus/exec-stream';
import type { ImageInfo, InstanceFull, Network } from '../incus/types';
import { acquireLock, pidAlive } from '../sandbox/lock';
import { aptMirror } from '../setup/image-recipe';
import { SETUP_NAMES } from '../setup/names';
import { DEFAULT_KEEP, isVersionOf, orphanImages, prunePlan, versionAlias } from './aliases';
import { chrootArgv, fetchAgentTarball, hostNpm, NpmRunner, resolveAgent, tarballExt, tarCreateArgv, tiedArgv } from './host';
import { BuildProgressEvent, BuildReporter, lineSplitter, pruneLogs } from './progress';
import {
  AgentImageRecipe,
  AGENT_SOURCES,
  agentImageMetadata,
  agentImageRecipe,
  agentSources,
  agentTarballName,
  AgentSource,
  BaseRef,
  buildAptSources,
  BuildMode,
  chooseMode,
  ImageManifest,
  installScript,
  manifestProperties,
  onlineBuildScript,
  parseAgentPins,
  parseBase,
  parseProbe,
  probeScript,
  ResolvedAgent,
} from './recipe';

export type Compression = 'none' | 'gzip' | 'xz';

/**
 * Exit 0 once boot has settled. Right after start, PID 1 may not yet have
 * created /run/systemd/system (its comm still "init"): ask what /sbin/init is.
 */
const SYSTEMD_SETTLED =
  'if [ -d /run/systemd/system ] || case "$(readlink -f /sbin/init)" in */systemd) true;; *) false;; esac; then s=$(systemctl is-system-running --wait 2>/dev/null); case "$s" in running|degraded) exit 0;; *) exit 3;; esac; fi';

export const BUILD_LABELS = {
  build: 'user.coi.build',
  pid: 'user.coi.build-pid',
  name: 'user.coi.build-name',
} as const;

export interface DefaultBuildRequest {
  kind: 'default';
  /** The alias to publish: `coi`. */
  name: string;
  /** `[container.build] base`. */
  base: string;
  agents: string[];
  mode?: BuildMode;
  force: boolean;
  compression: Compression;
  keep: number;
}

export interface CustomBuildRequest {
  kind: 'custom';
  name: string;
  base: string;
  script?: { text: string; file?: string };
  commands: string[];
  force: boolean;
  compression: Compression;
  keep: number;
}

export type BuildRequest = DefaultBuildRequest | CustomBuildRequest;

export interface BuildResult {
  buildId: string;
  name: string;
  fingerprint: string;
  versionAlias?: string;
  /** What happened: built now, imported from the cache, or already current. */
  outcome: 'built' | 'from-cache' | 'up-to-date';
  mode?: BuildMode;
  sizeBytes: number;
  seconds: number;
  log: string;
  tools: Record<string, string>;
  pruned: string[];
}

export interface BuilderDeps {
  incus: IncusClient;
  env: NodeJS.ProcessEnv;
  home: string;
  /** Where tarballs and agent packages are cached (/var/cache/coi). */
  cacheDir: string;
  logsDir: string;
  progress: (e: BuildProgressEvent) => void;
  /** Starts the watchdog that cleans up if this process dies; returns how to stop it. */
  watchdog?: (buildId: string, workDir: string) => { stop(): void };
  npm?: NpmRunner;
  now?: () => Date;
}

export function newBuildId(): string {
  return `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}-${randomBytes(3).toString('hex')}`;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return env.COI_CACHE_DIR || '/var/cache/coi';
}

/** One build. `run` resolves with the result or rejects with an error naming the failed step. */
export class ImageBuild {
  readonly id: string;
  readonly logPath: string;
  private readonly reporter: BuildReporter;
  private readonly npm: NpmRunner;
  private readonly started = Date.now();
  private workDir: string | undefined;
  private tempContainer: string | undefined;
  private watchdog: { stop(): void } | undefined;

  constructor(readonly req: BuildRequest, private readonly d: BuilderDeps, id = newBuildId()) {
    this.id = id;
    this.logPath = path.join(d.logsDir, `build-${id}.log`);
    this.reporter = new BuildReporter(id, this.logPath, d.progress);
    this.npm = d.npm ?? hostNpm;
  }

  async run(signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    let lock: { release(): Promise<void> } | undefined;
    try {
      r.begin('lock', `one build of ${this.req.name} at a time`);
      lock = await acquireLock(path.join(this.d.home, '.coi', 'locks'), `build-${this.req.name}`, 3_600_000);
      r.begin('clean', 'leftovers of interrupted builds');
      for (const what of await cleanOrphans(this.d.incus, this.d.cacheDir)) r.line(`removed ${what}`);
      check(signal);
      const result = this.req.kind === 'custom' ? await this.custom(this.req, signal) : await this.default(this.req, signal);
      r.begin('done', `${result.name} → ${result.fingerprint.slice(0, 12)} (${result.outcome}, ${result.seconds.toFixed(1)} s)`);
      return result;
    } catch (e) {
      throw r.fail(signal?.aborted ? new CoiError(ErrorCodes.CANCELLED, 'cancelled') : e);
    } finally {
      await this.cleanup();
      await lock?.release().catch(() => undefined);
      r.close();
      pruneLogs(this.d.logsDir);
    }
  }

  // ── the default image ──────────────────────────────────────────────────────

  private async default(req: DefaultBuildRequest, signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    let base: BaseRef;
    try {
      base = parseBase(req.base || SETUP_NAMES.baseImage);
    } catch (e) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `[container.build] base: ${(e as Error).message}`);
    }
    const bridgeNat = await this.bridgeHasNat();
    const { mode, why } = chooseMode({ base, bridgeNat, ...(req.mode ? { requested: req.mode } : {}), envOffline: /^(1|true|yes)$/i.test(this.d.env.COI_OFFLINE ?? '') });
    r.begin('plan', `${mode} build of ${req.name}: ${why}`);
    const { sources, unsupported } = agentSources(req.agents);
    for (const u of unsupported) r.line(`warning: ${u} has no installer from the npm registry yet; not installed`);
    if (mode === 'online' && base.kind === 'remote') return this.defaultOnline(req, base, sources, signal);
    return this.defaultOffline(req, base.kind === 'local' ? base.alias : SETUP_NAMES.baseImage, sources, signal);
  }

  private async bridgeHasNat(): Promise<boolean> {
    const net = await this.d.incus.get<Network>(this.d.incus.url(`/1.0/networks/${SETUP_NAMES.bridge}`)).catch(() => undefined);
    return net?.config['ipv4.nat'] === 'true';
  }

  /** Agent versions: pinned, else those of the current image or cache for the same layer, else the registry's latest. */
  private async resolveAgents(sources: AgentSource[], layer: string, current: ImageInfo | undefined, force: boolean, signal?: AbortSignal): Promise<ResolvedAgent[]> {
    const r = this.reporter;
    const pins = parseAgentPins(this.d.env.COI_AGENT_VERSIONS);
    // Versions already built for this layer need no registry: a rebuild is then reproducible offline.
    const known = new Map<string, { version: string; platformVersion: string }>();
    if (!force && current?.properties['coi.layer'] === layer) {
      for (const s of sources) {
        const v = /@([^@]+)$/.exec(current.properties[`coi.agents.${s.tool}`] ?? '')?.[1];
        const pv = current.properties[`coi.platform.${s.tool}`] ?? v;
        if (v && pv) known.set(s.tool, { version: v, platformVersion: pv });
      }
      if (known.size) r.line(`current ${this.req.name} has ${[...known].map(([t, v]) => `${t} ${v.version}`).join(', ')}; --force looks for newer ones`);
    }
    if (!force && known.size < sources.length) {
      const idx = await readCacheIndex(this.d.cacheDir, this.req.name, layer);
      if (idx) {
        for (const a of idx.agents) if (!known.has(a.tool)) known.set(a.tool, { version: a.version, platformVersion: a.platformVersion ?? a.version });
        r.line(`cached build ${idx.hash} has ${idx.agents.map((a) => `${a.tool} ${a.version}`).join(', ')}`);
      }
    }
    const out: ResolvedAgent[] = [];
    for (const s of sources) {
      const k = known.get(s.tool);
      const a = pins[s.tool] === undefined && k ? { ...s, ...k } : await resolveAgent(this.npm, s, pins[s.tool] ?? s.spec, signal);
      r.line(`${s.tool}: ${s.npm}@${a.version} (from ${s.platform}@${a.platformVersion})${pins[s.tool] ? ' (pinned)' : k && !pins[s.tool] ? ' (as built before)' : ''}`);
      out.push(a);
    }
    return out;
  }

  private async defaultOffline(req: DefaultBuildRequest, baseAlias: string, sources: AgentSource[], signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    const incus = this.d.incus;
    if (process.getuid?.() !== 0) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, 'an offline build makes the image on this host (chroot, device files): run it as root', { remedy: { title: 'Run it with sudo', shell: 'sudo coi build' } });
    }
    r.begin('base', `the offline base image ${baseAlias}`);
    const baseFp = await incus.imageAlias(baseAlias);
    if (!baseFp) throw new CoiError(ErrorCodes.NOT_FOUND, `the base image ${baseAlias} does not exist`, { remedy: { title: 'Build it', shell: 'sudo coi setup' } });
    const baseInfo = await incus.getImage(baseFp);
    r.line(`${baseAlias} = ${baseFp.slice(0, 12)} (${baseInfo.properties.description ?? ''})`);
    const currentFp = await incus.imageAlias(req.name);
    const current = currentFp ? await incus.getImage(currentFp).catch(() => undefined) : undefined;

    r.begin('agents', 'agent versions (npm registry, through this host)');
    const layer = agentImageRecipe({ alias: req.name, base: { alias: baseAlias, fingerprint: baseFp }, agents: sources.map((s) => ({ ...s, version: '0.0.0', platformVersion: '0.0.0' })) }).layerHash;
    const agents = await this.resolveAgents(sources, layer, current, req.force, signal);
    const recipe = agentImageRecipe({ alias: req.name, base: { alias: baseAlias, fingerprint: baseFp }, agents });
    r.line(`recipe ${recipe.hash} (layer ${recipe.layerHash})`);

    r.begin('cache', `${req.name} for recipe ${recipe.hash}`);
    if (!req.force && current?.properties['coi.recipe'] === recipe.hash) {
      r.line(`${req.name} is already ${currentFp!.slice(0, 12)}, built from this recipe`);
      return this.result(req.name, currentFp!, 'up-to-date', current.size, undefined, toolsOf(current), [], 'offline');
    }
    const imagesDir = path.join(this.d.cacheDir, 'images');
    await fs.mkdir(imagesDir, { recursive: true });
    const tarball = path.join(imagesDir, `${req.name}-${recipe.hash}${tarballExt(req.compression)}`);
    let outcome: BuildResult['outcome'] = 'from-cache';
    if (req.force || !existsSync(tarball)) {
      r.line(req.force ? '--force: building anew' : 'not cached: building');
      await this.buildRootfsTarball(recipe, baseFp, tarball, req.compression, signal);
      await writeCacheIndex(this.d.cacheDir, req.name, recipe, path.basename(tarball));
      outcome = 'built';
    } else r.line(`cached: ${tarball}`);

    r.begin('import', `importing ${path.basename(tarball)} (${mb(statSync(tarball).size)})`);
    const fp = await importTarball(incus, tarball, signal);
    check(signal);
    const info = await incus.getImage(fp);
    const pub = await this.publish(req.name, fp, req.keep);
    return this.result(req.name, fp, outcome, info.size, pub.versionAlias, toolsOf(info), pub.pruned, 'offline');
  }

  /** Unpack the base, install packages and agents, configure, pack: a complete tarball in the cache, or nothing. */
  private async buildRootfsTarball(recipe: AgentImageRecipe, baseFp: string, tarball: string, compression: Compression, signal?: AbortSignal): Promise<void> {
    const r = this.reporter;
    const work = await this.makeScratch();
    const rootfs = path.join(work, 'rootfs');
    const onLine = (l: string) => r.line(l);
    const sh = (script: string, opts: { network: boolean; user?: number; quiet?: boolean }) =>
      run('setpriv', chrootArgv(rootfs, ['/bin/bash', '-c', script], opts).slice(1), { timeoutMs: 3_600_000, ...(opts.quiet ? {} : { onLine }), ...(signal ? { signal } : {}) });

    r.begin('unpack', 'the base image\'s root filesystem');
    const baseTar = path.join(work, 'base.tar');
    const bytes = await this.d.incus.exportImage(baseFp, baseTar, signal ? { signal } : {});
    r.line(`exported ${baseFp.slice(0, 12)} (${mb(bytes)})`);
    await run('setpriv', tiedArgv(['tar', '--numeric-owner', '-xpf', baseTar, '-C', work, 'rootfs']).slice(1), { timeoutMs: 900_000, ...(signal ? { signal } : {}) });
    await fs.rm(baseTar, { force: true });
    if (!existsSync(path.join(rootfs, 'bin', 'bash'))) throw new CoiError(ErrorCodes.COMMAND_FAILED, `the base image ${baseFp.slice(0, 12)} has no rootfs/bin/bash: not a unified Debian image`);

    r.begin('packages', `${recipe.packages.length} Debian packages (apt in the rootfs, from ${aptMirror(this.d.env, readAptSources())})`);
    const resolv = path.join(rootfs, 'etc', 'resolv.conf');
    const sources = path.join(rootfs, 'etc', 'apt', 'sources.list');
    const savedResolv = await fs.readFile(resolv).catch(() => undefined);
    const savedSources = await fs.readFile(sources).catch(() => undefined);
    await fs.rm(resolv, { force: true });
    await fs.copyFile('/etc/resolv.conf', resolv).catch(() => undefined);
    await fs.writeFile(sources, buildAptSources(aptMirror(this.d.env, readAptSources()), this.d.env, readAptSources()));
    await sh(recipe.packagesScript, { network: true });
    await fs.rm(resolv, { force: true });
    if (savedResolv) await fs.writeFile(resolv, savedResolv);
    if (savedSources) await fs.writeFile(sources, savedSources);

    r.begin('agents-install', recipe.agents.map((a) => `${a.tool} ${a.version}`).join(', ') || 'no agents');
    const agentRecord: NonNullable<ImageManifest['agents']> = {};
    for (const a of recipe.agents) {
      const t = await fetchAgentTarball(this.npm, a, this.d.cacheDir, work, { ...(signal ? { signal } : {}), onLine });
      r.line(`${a.platform}@${a.platformVersion}: ${t.cached ? 'from the cache' : 'downloaded'} ${t.file}`);
      const inRoot = `/tmp/${agentTarballName(a)}`;
      await fs.copyFile(t.file, path.join(rootfs, inRoot));
      await sh(installScript(a, inRoot), { network: false });
      r.line(`installed ${a.target}`);
      agentRecord[a.tool] = { npm: a.npm, version: a.version };
    }

    r.begin('configure', 'user code, sudo, tmux, power commands');
    await sh(recipe.configureScript, { network: false });

    r.begin('probe', 'tool versions, run as code without network');
    const probe = await sh(probeScript(recipe.agents), { network: false, user: 1000, quiet: true });
    const tools = parseProbe(probe.stdout);
    for (const [t, v] of Object.entries(tools)) r.line(`${t} ${v}`);
    for (const a of recipe.agents) {
      if (!tools[a.tool]) throw new CoiError(ErrorCodes.COMMAND_FAILED, `${a.tool} does not run in the image (${a.target} ${a.versionArgs.join(' ')} printed nothing)`);
    }
    const manifest: ImageManifest = {
      name: recipe.alias,
      kind: 'default',
      builtAt: (this.d.now?.() ?? new Date()).toISOString(),
      buildId: this.id,
      recipe: recipe.hash,
      base: `${recipe.base.alias}@${recipe.base.fingerprint.slice(0, 12)}`,
      packages: recipe.packages,
      agents: agentRecord,
      tools,
    };
    await fs.mkdir(path.join(rootfs, 'etc', 'coi'), { recursive: true });
    await fs.writeFile(path.join(rootfs, 'etc', 'coi', 'image.json'), JSON.stringify(manifest, null, 2) + '\n');
    const metadata = agentImageMetadata(manifest, this.d.now?.() ?? new Date(), `COI agent image (Debian bookworm + ${Object.keys(agentRecord).join(', ') || 'no agents'}; offline build ${recipe.hash})`, {
      'coi.layer': recipe.layerHash,
      'coi.build-pid': String(process.pid),
      ...Object.fromEntries(recipe.agents.map((a) => [`coi.platform.${a.tool}`, a.platformVersion])),
    });
    await fs.writeFile(path.join(work, 'metadata.yaml'), metadata);

    r.begin('pack', `the image tarball (${compression === 'none' ? 'uncompressed' : compression})`);
    const partial = path.join(work, `image${tarballExt(compression)}`);
    await run('setpriv', tarCreateArgv(work, ['metadata.yaml', 'rootfs'], partial, compression).slice(1), { timeoutMs: 3_600_000, ...(signal ? { signal } : {}) });
    check(signal);
    await fs.rename(partial, tarball);
    r.line(`${tarball} (${mb(statSync(tarball).size)})`);
    await fs.rm(rootfs, { recursive: true, force: true });
  }

  // ── online: a temporary container ─────────────────────────────────────────

  private async defaultOnline(req: DefaultBuildRequest, base: Extract<BaseRef, { kind: 'remote' }>, sources: AgentSource[], signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    const currentFp = await this.d.incus.imageAlias(req.name);
    const current = currentFp ? await this.d.incus.getImage(currentFp).catch(() => undefined) : undefined;
    if (current && !req.force) {
      r.line(`${req.name} exists (${currentFp!.slice(0, 12)}); --force rebuilds it from ${base.remote}:${base.alias}`);
      return this.result(req.name, currentFp!, 'up-to-date', current.size, undefined, toolsOf(current), [], 'online');
    }
    r.begin('agents', 'agent versions (npm registry, through this host)');
    const agents = await this.resolveAgents(sources, '', undefined, true, signal);
    const recipe = agentImageRecipe({ alias: req.name, base: { alias: `${base.remote}:${base.alias}`, fingerprint: `${base.server}/${base.alias}` }, agents });
    const name = await this.createTempContainer({ type: 'image', alias: base.alias, server: base.server, protocol: base.protocol, mode: 'pull' }, signal);
    r.begin('script', 'the build script (packages, user code, tmux, power commands)');
    await this.runInContainer(name, onlineBuildScript(recipe), signal);
    r.begin('agents-install', agents.map((a) => `${a.tool} ${a.version}`).join(', ') || 'no agents');
    const work = await this.makeScratch();
    const agentRecord: NonNullable<ImageManifest['agents']> = {};
    for (const a of agents) {
      const t = await fetchAgentTarball(this.npm, a, this.d.cacheDir, work, { ...(signal ? { signal } : {}), onLine: (l) => r.line(l) });
      const inRoot = `/tmp/${agentTarballName(a)}`;
      await this.d.incus.pushFileStream(name, inRoot, createReadStream(t.file), statSync(t.file).size, { mode: 0o600 });
      await this.runInContainer(name, installScript(a, inRoot), signal);
      r.line(`installed ${a.target}`);
      agentRecord[a.tool] = { npm: a.npm, version: a.version };
    }
    const manifest: ImageManifest = {
      name: req.name,
      kind: 'default',
      builtAt: new Date().toISOString(),
      buildId: this.id,
      recipe: recipe.hash,
      base: `${base.remote}:${base.alias}`,
      packages: recipe.packages,
      agents: agentRecord,
      tools: await this.probeContainer(name, agents),
    };
    return this.finishContainerBuild(name, manifest, req, `COI agent image (${base.remote}:${base.alias}; online build ${recipe.hash})`, 'online', signal);
  }

  // ── custom images ─────────────────────────────────────────────────────────

  private async custom(req: CustomBuildRequest, signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    if (!req.script && req.commands.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, `a custom image needs a build script (--script FILE) or commands`);
    let base: BaseRef;
    try {
      base = parseBase(req.base);
    } catch (e) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, (e as Error).message);
    }
    r.begin('base', `base image ${req.base}`);
    if (base.kind === 'local') {
      const fp = await this.d.incus.imageAlias(base.alias);
      if (!fp) {
        throw new CoiError(ErrorCodes.NOT_FOUND, `the base image ${base.alias} does not exist`, {
          remedy: base.alias === 'coi' ? { title: 'Build the default image first', shell: 'sudo coi build' } : { title: 'See the images', shell: 'coi image list' },
        });
      }
      r.line(`${base.alias} = ${fp.slice(0, 12)}`);
    }
    if (!req.force) {
      const fp = await this.d.incus.imageAlias(req.name);
      if (fp) r.line(`${req.name} exists (${fp.slice(0, 12)}): building a new version`);
    }
    const name = await this.createTempContainer(base.kind === 'local' ? { type: 'image', alias: base.alias } : { type: 'image', alias: base.alias, server: base.server, protocol: base.protocol, mode: 'pull' }, signal);
    const parts: string[] = [];
    if (req.script) {
      r.begin('script', `${req.script.file ?? 'the build script'} as root`);
      await this.runInContainer(name, req.script.text, signal);
      parts.push(req.script.text);
    }
    if (req.commands.length) {
      r.begin('commands', `${req.commands.length} command(s) as root`);
      const text = `#!/bin/bash\nset -euxo pipefail\n${req.commands.join('\n')}\n`;
      await this.runInContainer(name, text, signal);
      parts.push(text);
    }
    const manifest: ImageManifest = {
      name: req.name,
      kind: 'custom',
      builtAt: new Date().toISOString(),
      buildId: this.id,
      base: req.base,
      // Agents the base had are still there: record them too.
      tools: await this.probeContainer(name, [], Object.values(AGENT_SOURCES)),
      script: { sha256: createHash('sha256').update(parts.join('\n')).digest('hex'), ...(req.script?.file ? { file: req.script.file } : {}) },
    };
    return this.finishContainerBuild(name, manifest, req, `COI custom image ${req.name} (from ${req.base})`, undefined, signal);
  }

  private async createTempContainer(source: { type: 'image'; alias: string; server?: string; protocol?: 'simplestreams'; mode?: 'pull' }, signal?: AbortSignal): Promise<string> {
    const r = this.reporter;
    const name = `coi-build-${this.id.slice(-6)}-${randomBytes(2).toString('hex')}`;
    r.begin('container', `temporary container ${name} from ${source.server ? `${source.server} ` : ''}${source.alias}`);
    this.tempContainer = name;
    this.startWatchdog();
    await this.d.incus.createInstance(
      {
        name,
        type: 'container',
        source,
        profiles: ['default'],
        config: {
          [BUILD_LABELS.build]: this.id,
          [BUILD_LABELS.pid]: String(process.pid),
          [BUILD_LABELS.name]: this.req.name,
          'security.privileged': 'false',
          'security.guestapi': 'false',
          'boot.autostart': 'false',
        },
        description: `COI image build ${this.id} of ${this.req.name}`,
      },
      { timeoutMs: 1_800_000, ...(signal ? { signal } : {}) },
    );
    await this.d.incus.setState(name, 'start', { timeoutMs: 120_000, ...(signal ? { signal } : {}) });
    // Until boot has settled: systemd-tmpfiles would empty /tmp under the script.
    const deadline = Date.now() + 120_000;
    for (;;) {
      check(signal);
      const p = await this.d.incus
        .exec(name, ['sh', '-c', SYSTEMD_SETTLED], { timeoutMs: 60_000 })
        .catch(() => ({ exitCode: -1 }));
      if (p.exitCode === 0) break;
      if (Date.now() > deadline) throw new CoiError(ErrorCodes.TIMEOUT, `${name} did not finish booting within 120 s`);
      await new Promise((res) => setTimeout(res, 250));
    }
    r.line(`${name} is running`);
    return name;
  }

  /** Pushes a script and runs it as root, streaming its output into the log. */
  private async runInContainer(name: string, script: string, signal?: AbortSignal): Promise<void> {
    const file = `/root/coi-build-${randomBytes(3).toString('hex')}.sh`;
    await this.d.incus.pushFile(name, file, Buffer.from(script), { mode: 0o700 });
    const split = lineSplitter((l) => this.reporter.line(l));
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        split.push(chunk);
        cb();
      },
    });
    const code = await execStream(this.d.incus, name, ['/bin/bash', file], {
      cwd: '/root',
      env: { HOME: '/root', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', DEBIAN_FRONTEND: 'noninteractive', LANG: 'C.UTF-8' },
      stdout: sink,
      stderr: sink,
      ...(signal ? { signal } : {}),
    });
    split.flush();
    check(signal);
    await this.d.incus.exec(name, ['rm', '-f', file]).catch(() => undefined);
    if (code !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `the script exited with ${code}`);
  }

  private async probeContainer(name: string, agents: ResolvedAgent[], optional: AgentSource[] = []): Promise<Record<string, string>> {
    const p = await this.d.incus.exec(name, ['bash', '-c', probeScript([...agents, ...optional])], { user: 1000, group: 1000, cwd: '/tmp', env: { PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' } }).catch(() => ({ stdout: '', exitCode: -1 }));
    const tools = parseProbe(p.stdout);
    for (const [t, v] of Object.entries(tools)) this.reporter.line(`${t} ${v}`);
    for (const a of agents) if (!tools[a.tool]) throw new CoiError(ErrorCodes.COMMAND_FAILED, `${a.tool} does not run in the image`);
    return tools;
  }

  /** Writes the manifest, stops, publishes, aliases, prunes. */
  private async finishContainerBuild(name: string, manifest: ImageManifest, req: BuildRequest, description: string, mode: BuildMode | undefined, signal?: AbortSignal): Promise<BuildResult> {
    const r = this.reporter;
    await this.d.incus.exec(name, ['mkdir', '-p', '/etc/coi']);
    await this.d.incus.pushFile(name, '/etc/coi/image.json', Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
    await this.d.incus.exec(name, ['sh', '-c', 'rm -rf /tmp/* /var/tmp/*; : > /etc/machine-id; apt-get clean 2>/dev/null || true']).catch(() => undefined);
    r.begin('stop', `stopping ${name}`);
    await this.d.incus.setState(name, 'stop', { timeoutSec: 30, timeoutMs: 90_000, ...(signal ? { signal } : {}) }).catch(() => this.d.incus.setState(name, 'stop', { force: true }));
    r.begin('image', `publishing ${name} as an image (${req.compression === 'none' ? 'uncompressed' : req.compression})`);
    const properties = { os: 'debian', description, ...manifestProperties(manifest), 'coi.build-pid': String(process.pid) };
    const fp = await this.d.incus.publishInstance(name, { properties, compression: req.compression, ...(signal ? { signal } : {}) });
    check(signal);
    const info = await this.d.incus.getImage(fp);
    r.line(`image ${fp.slice(0, 12)} (${mb(info.size)})`);
    const pub = await this.publish(req.name, fp, req.keep);
    return this.result(req.name, fp, 'built', info.size, pub.versionAlias, manifest.tools, pub.pruned, mode);
  }

  // ── publishing ────────────────────────────────────────────────────────────

  /** A version alias, then the main alias (one call), then prune old versions. */
  private async publish(name: string, fp: string, keep: number): Promise<{ versionAlias?: string; pruned: string[] }> {
    const r = this.reporter;
    const incus = this.d.incus;
    r.begin('publish', `alias ${name} → ${fp.slice(0, 12)}`);
    const aliases = await incus.listImageAliases();
    let version = aliases.find((a) => a.target === fp && isVersionOf(name, a.name))?.name;
    if (!version) {
      version = versionAlias(name, this.d.now?.() ?? new Date(), new Set(aliases.map((a) => a.name)));
      await incus.setImageAlias(version, fp, `COI ${name}, build ${this.id}`);
      r.line(`version alias ${version}`);
    }
    const before = aliases.find((a) => a.name === name)?.target;
    if (before !== fp) {
      await incus.setImageAlias(name, fp, `COI ${name} (current: ${version})`);
      r.line(`${name} moved ${before ? `from ${before.slice(0, 12)} ` : ''}to ${fp.slice(0, 12)}`);
    } else r.line(`${name} already points at ${fp.slice(0, 12)}`);
    const plan = prunePlan(name, await incus.listImageAliases(), keep);
    for (const a of plan.aliases) await incus.deleteImageAlias(a).catch((e: unknown) => r.line(`could not delete alias ${a}: ${toCoiError(e).message}`));
    for (const i of plan.images) await incus.deleteImage(i).catch((e: unknown) => r.line(`could not delete image ${i.slice(0, 12)}: ${toCoiError(e).message}`));
    if (plan.aliases.length) r.line(`pruned ${plan.aliases.join(', ')} (keeping ${keep})`);
    return { versionAlias: version, pruned: plan.aliases };
  }

  private result(name: string, fp: string, outcome: BuildResult['outcome'], size: number, version: string | undefined, tools: Record<string, string>, pruned: string[], mode: BuildMode | undefined): BuildResult {
    return {
      buildId: this.id,
      name,
      fingerprint: fp,
      ...(version ? { versionAlias: version } : {}),
      outcome,
      ...(mode ? { mode } : {}),
      sizeBytes: size,
      seconds: (Date.now() - this.started) / 1000,
      log: this.logPath,
      tools,
      pruned,
    };
  }

  /** The scratch folder (not `build-*`: set-up removes those of its own). */
  private scratchDir(): string {
    return path.join(this.d.cacheDir, `imgbuild-${this.id}`);
  }

  private async makeScratch(): Promise<string> {
    const work = this.scratchDir();
    await fs.mkdir(work, { recursive: true, mode: 0o700 });
    await fs.writeFile(path.join(work, 'builder.pid'), String(process.pid));
    this.workDir = work;
    this.startWatchdog();
    return work;
  }

  private startWatchdog(): void {
    if (this.watchdog || !this.d.watchdog) return;
    this.watchdog = this.d.watchdog(this.id, this.scratchDir());
  }

  /** Removes what this build made that is not part of a finished image. */
  private async cleanup(): Promise<void> {
    if (this.tempContainer) {
      await this.d.incus.deleteInstance(this.tempContainer, { force: true }).catch((e: unknown) => {
        if (!(e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND)) this.reporter.line(`could not delete ${this.tempContainer}: ${toCoiError(e).message}`);
      });
    }
    await cleanupBuild(this.d.incus, this.id, this.workDir).catch(() => undefined);
    this.watchdog?.stop();
  }
}

function check(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CoiError(ErrorCodes.CANCELLED, 'cancelled');
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}

function toolsOf(info: ImageInfo): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(info.properties ?? {})) if (k.startsWith('coi.tools.')) out[k.slice('coi.tools.'.length)] = v;
  return out;
}

/** Imports a tarball unless Incus already has it (same bytes, same fingerprint). */
async function importTarball(incus: IncusClient, tarball: string, signal?: AbortSignal): Promise<string> {
  const fp = await new Promise<string>((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(tarball).on('data', (c) => h.update(c)).on('end', () => resolve(h.digest('hex'))).on('error', reject);
  });
  const known = await incus.getImage(fp).catch(() => undefined);
  if (known) return fp;
  return incus.importImage(tarball, { timeoutMs: 1_800_000, ...(signal ? { signal } : {}) });
}

// ── the cache index: which agent versions a cached build of a layer has ─────

interface CacheIndex {
  hash: string;
  layer: string;
  file: string;
  agents: { tool: string; version: string; platformVersion?: string }[];
  builtAt: string;
}

export async function readCacheIndex(cacheDir: string, name: string, layer: string): Promise<CacheIndex | undefined> {
  try {
    const idx = JSON.parse(await fs.readFile(path.join(cacheDir, 'images', `${name}-${layer}.json`), 'utf8')) as CacheIndex;
    return existsSync(path.join(cacheDir, 'images', idx.file)) ? idx : undefined;
  } catch {
    return undefined;
  }
}

export async function writeCacheIndex(cacheDir: string, name: string, recipe: AgentImageRecipe, file: string): Promise<void> {
  const idx: CacheIndex = { hash: recipe.hash, layer: recipe.layerHash, file, agents: recipe.agents.map((a) => ({ tool: a.tool, version: a.version, platformVersion: a.platformVersion })), builtAt: new Date().toISOString() };
  const target = path.join(cacheDir, 'images', `${name}-${recipe.layerHash}.json`);
  await fs.writeFile(`${target}.tmp-${process.pid}`, JSON.stringify(idx, null, 2) + '\n');
  await fs.rename(`${target}.tmp-${process.pid}`, target);
  // Older tarballs of the same image are superseded, and so are the indexes that named them
  // and the agent packages only they used: the cache holds one build, not a history.
  const imagesDir = path.join(cacheDir, 'images');
  for (const n of readdirSync(imagesDir)) {
    if (!n.startsWith(`${name}-`) || n.startsWith(`${SETUP_NAMES.baseImage}-`)) continue;
    const rest = n.slice(name.length + 1);
    if (/^[0-9a-f]{16}\.tar(\.gz|\.xz)?$/.test(rest) && n !== file) await fs.rm(path.join(imagesDir, n), { force: true });
    if (/^[0-9a-f]{16}\.json$/.test(rest) && n !== path.basename(target)) await fs.rm(path.join(imagesDir, n), { force: true });
  }
  const keep = new Set(recipe.agents.map((a) => agentTarballName(a)));
  const agentsDir = path.join(cacheDir, 'agents');
  for (const n of existsSync(agentsDir) ? readdirSync(agentsDir) : []) {
    if (n.endsWith('.tgz') && !keep.has(n)) await fs.rm(path.join(agentsDir, n), { force: true });
  }
}

// ── leftovers ─────────────────────────────────────────────────────────────

/** Removes one build's temporary containers, unaliased images and scratch folder. */
export async function cleanupBuild(incus: IncusClient, buildId: string, workDir: string | undefined): Promise<string[]> {
  const removed: string[] = [];
  const instances = await incus.listInstances().catch(() => [] as InstanceFull[]);
  for (const i of instances.filter((x) => x.config?.[BUILD_LABELS.build] === buildId)) {
    await incus.deleteInstance(i.name, { force: true }).then(
      () => removed.push(`container ${i.name}`),
      () => undefined,
    );
  }
  const images = await incus.listImages().catch(() => [] as ImageInfo[]);
  for (const img of images.filter((x) => x.properties?.['coi.build-id'] === buildId && (x.aliases ?? []).length === 0)) {
    await incus.deleteImage(img.fingerprint).then(
      () => removed.push(`unpublished image ${img.fingerprint.slice(0, 12)}`),
      () => undefined,
    );
  }
  // Only ever this build's own scratch folder, whatever path came in.
  if (workDir && path.basename(workDir) === `imgbuild-${buildId}` && existsSync(workDir)) {
    await fs.rm(workDir, { recursive: true, force: true });
    removed.push(`scratch folder ${workDir}`);
  }
  return removed;
}

/** Leftovers of builds whose builder is gone: containers, unaliased images, scratch folders. */
export async function cleanOrphans(incus: IncusClient, cacheDir: string, dryRun = false, alive: (pid: number) => boolean = pidAliveNotZombie): Promise<string[]> {
  const out: string[] = [];
  const instances = await incus.listInstances().catch(() => [] as InstanceFull[]);
  for (const i of instances) {
    const id = i.config?.[BUILD_LABELS.build];
    if (!id) continue;
    const pid = Number(i.config[BUILD_LABELS.pid] ?? 0);
    if (pid && alive(pid)) continue;
    if (!dryRun) await incus.deleteInstance(i.name, { force: true }).catch(() => undefined);
    out.push(`build container ${i.name} (build ${id})`);
  }
  const images = await incus.listImages().catch(() => [] as ImageInfo[]);
  for (const fp of orphanImages(images.map((x) => ({ fingerprint: x.fingerprint, aliases: (x.aliases ?? []).map((a) => a.name), properties: x.properties ?? {} })), alive)) {
    if (!dryRun) await incus.deleteImage(fp).catch(() => undefined);
    out.push(`unpublished build image ${fp.slice(0, 12)}`);
  }
  let entries: string[] = [];
  try {
    entries = readdirSync(cacheDir);
  } catch {
    // no cache yet
  }
  for (const n of entries.filter((x) => /^imgbuild-\d{8}-\d{6}-[0-9a-f]{6}$/.test(x))) {
    const dir = path.join(cacheDir, n);
    if (await scratchInUse(dir, alive)) continue;
    if (!dryRun) await fs.rm(dir, { recursive: true, force: true });
    out.push(`scratch folder ${dir}`);
  }
  return out;
}

/** A scratch folder is in use while the pid file its build wrote names a live process. */
async function scratchInUse(dir: string, alive: (pid: number) => boolean): Promise<boolean> {
  const pid = Number((await fs.readFile(path.join(dir, 'builder.pid'), 'utf8').catch(() => '')).trim());
  return pid > 0 && alive(pid);
}

/** Like pidAlive, but a zombie (dead, not yet reaped) counts as gone. */
export function pidAliveNotZombie(pid: number): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const stat = readFileSyncSafe(`/proc/${pid}/stat`);
    const state = stat ? stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) : '';
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}

function readFileSyncSafe(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

function readAptSources(): string[] {
  const out: string[] = [];
  if (existsSync('/etc/apt/sources.list')) out.push(readFileSync('/etc/apt/sources.list', 'utf8'));
  const dir = '/etc/apt/sources.list.d';
  if (existsSync(dir)) for (const n of readdirSync(dir).filter((n) => /\.(list|sources)$/.test(n))) out.push(readFileSync(path.join(dir, n), 'utf8'));
  return out;
}
