/**
 * Host commands of the offline build, as argv builders (pure, unit-tested)
 * and the agent fetcher.
 *
 * Every long host command is tied to the coi process: `setpriv --pdeathsig`
 * kills it when coi dies, even by SIGKILL, and commands in the rootfs run in
 * their own pid namespace (`unshare --pid --kill-child`), so apt's children
 * go with it. /proc is mounted inside a private mount namespace: nothing is
 * left mounted on the host whatever happens. Steps that need no network get
 * an empty network namespace: an agent binary run for its version can send
 * nothing anywhere.
 */
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CoiError, ErrorCodes } from '../errors';
import { run } from '../host/run';
import { agentTarballName, AgentSource, ResolvedAgent, resolveFromView } from './recipe';

/** argv that dies with this process. */
export function tiedArgv(argv: string[]): string[] {
  return ['setpriv', '--pdeathsig', 'KILL', ...argv];
}

export const ROOTFS_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** argv that runs `argv` inside `rootfs` (chroot), isolated as described above. */
export function chrootArgv(rootfs: string, argv: string[], opts: { network: boolean; user?: number; env?: Record<string, string> }): string[] {
  const env = {
    PATH: ROOTFS_PATH,
    HOME: opts.user === undefined ? '/root' : '/home/code',
    LANG: 'C.UTF-8',
    DEBIAN_FRONTEND: 'noninteractive',
    ...(opts.env ?? {}),
  };
  return tiedArgv([
    'unshare',
    '--mount',
    '--pid',
    '--fork',
    '--kill-child=SIGKILL',
    `--mount-proc=${path.join(rootfs, 'proc')}`,
    ...(opts.network ? [] : ['--net']),
    'chroot',
    ...(opts.user !== undefined ? [`--userspec=${opts.user}:${opts.user}`] : []),
    rootfs,
    '/usr/bin/env',
    '-i',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ...argv,
  ]);
}

/** tar argv that packs `dir`'s entries into `out`. */
export function tarCreateArgv(dir: string, entries: string[], out: string, compression: 'none' | 'gzip' | 'xz'): string[] {
  const z = compression === 'gzip' ? ['-z'] : compression === 'xz' ? ['-J'] : [];
  return tiedArgv(['tar', '--numeric-owner', '--xattrs', '--xattrs-include=security.capability', ...z, '-C', dir, '-cf', out, ...entries]);
}

export function tarballExt(compression: 'none' | 'gzip' | 'xz'): string {
  return compression === 'gzip' ? '.tar.gz' : compression === 'xz' ? '.tar.xz' : '.tar';
}

export interface NpmRunner {
  (args: string[], opts: { cwd?: string; signal?: AbortSignal; onLine?: (l: string) => void }): Promise<string>;
}

/** npm as the host has it configured (its registry, its CA), tied to this process. */
export const hostNpm: NpmRunner = async (args, opts) => {
  const [cmd, ...rest] = tiedArgv(['npm', '--no-update-notifier', '--no-fund', '--no-audit', ...args]);
  const r = await run(cmd!, rest, {
    timeoutMs: 900_000,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onLine ? { onLine: opts.onLine } : {}),
  });
  return r.stdout;
};

/** The latest (or a pinned) version of an agent and the platform package it pins. */
export async function resolveAgent(npm: NpmRunner, source: AgentSource, spec: string, signal?: AbortSignal): Promise<ResolvedAgent> {
  let out: string;
  try {
    out = await npm(['view', `${source.npm}@${spec}`, 'version', 'optionalDependencies', '--json'], signal ? { signal } : {});
  } catch (e) {
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `could not ask the npm registry for ${source.npm}@${spec}: ${(e as Error).message}`, {
      remedy: { title: 'Check that npm reaches its registry from this host (npm ping), or pin versions', shell: 'COI_AGENT_VERSIONS=claude=X.Y.Z,opencode=X.Y.Z coi build' },
    });
  }
  let view: unknown;
  try {
    view = JSON.parse(out);
  } catch {
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `npm view ${source.npm}@${spec} printed no JSON`);
  }
  // A range matching several versions gives an array (of versions, or of objects), in no particular order.
  if (Array.isArray(view)) {
    const versionOf = (x: unknown) => (typeof x === 'string' ? x : (x as { version?: string } | null)?.version ?? '');
    const newest = [...view].sort((a, b) => compareVersions(versionOf(a), versionOf(b))).pop();
    if (typeof newest === 'string') return resolveAgent(npm, source, newest, signal);
    view = newest;
  }
  // With one field present, npm prints its bare value.
  if (typeof view === 'string') view = { version: view };
  return resolveFromView(source, view);
}

/**
 * The platform package's tarball in the cache, fetched with `npm pack` when
 * absent. npm checks it against the registry's integrity hash; no package
 * script runs on the host. Written under a temporary name, then renamed.
 */
export async function fetchAgentTarball(npm: NpmRunner, agent: ResolvedAgent, cacheDir: string, workDir: string, opts: { signal?: AbortSignal; onLine?: (l: string) => void } = {}): Promise<{ file: string; cached: boolean; integrity?: string }> {
  const dir = path.join(cacheDir, 'agents');
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, agentTarballName(agent));
  if (existsSync(file)) return { file, cached: true };
  const tmp = path.join(workDir, 'npm');
  await fs.mkdir(tmp, { recursive: true });
  const out = await npm(['pack', `${agent.platform}@${agent.platformVersion}`, '--pack-destination', tmp, '--cache', path.join(tmp, 'cache'), '--json'], { cwd: tmp, ...opts });
  let info: { filename?: string; integrity?: string } = {};
  try {
    const parsed = JSON.parse(out) as { filename?: string; integrity?: string }[];
    info = parsed[0] ?? {};
  } catch {
    // older npm: find the file below
  }
  const packed = info.filename ? path.join(tmp, info.filename.replace(/^@/, '').replace(/\//g, '-')) : undefined;
  const candidates = packed && existsSync(packed) ? [packed] : (await fs.readdir(tmp)).filter((n) => n.endsWith('.tgz')).map((n) => path.join(tmp, n));
  if (candidates.length !== 1) throw new CoiError(ErrorCodes.COMMAND_FAILED, `npm pack ${agent.platform}@${agent.platformVersion} left ${candidates.length} tarballs`);
  await fs.rename(candidates[0]!, `${file}.partial-${process.pid}`);
  await fs.rename(`${file}.partial-${process.pid}`, file);
  await fs.rm(path.join(tmp, 'cache'), { recursive: true, force: true });
  return { file, cached: false, ...(info.integrity ? { integrity: info.integrity } : {}) };
}

/** Orders x.y.z versions; a pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?/.exec(v);
    return m ? { n: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] } : { n: [-1, -1, -1], pre: undefined };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) if (x.n[i] !== y.n[i]) return x.n[i]! - y.n[i]!;
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}
