/**
 * Warm-pool figures: `coi run -- true` and `coi shell --background` (to the
 * agent's tmux pane) with the pool warm, each against `srt true` (Anthropic's
 * sandbox-runtime, a process sandbox; installed by bench/setup.sh) and against
 * the cold path, all measured in the same run, alternating.
 *
 * The pool is kept by a guard of the bench's own (own socket, scope and lock
 * directory, so the host's guard is not touched), which needs root. Before
 * each warm launch the bench waits, unmeasured, until the pool is full again:
 * the figure is a launch that finds a warm container, as the pool intends.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { tablesFor } from '../helper/guard/network/names';
import { nftExec, removeAllRules } from '../helper/guard/network/nft';

export interface PoolBenchDeps {
  repo: string;
  helper: string;
  root: string;
  prefix: string;
  runs: number;
  time: (f: () => Promise<unknown>) => Promise<number>;
  coi: (args: string[], env: NodeJS.ProcessEnv, cwd: string) => Promise<{ code: number; stdout: string; stderr: string }>;
  must: (p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) => Promise<string>;
  add: (name: string, unit: string, subject: number[], baselineName: string, baseline: number[], note?: string) => void;
}

function run(cmd: string, args: string[], cwd: string): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { cwd, stdio: 'ignore' });
    c.on('close', (code) => resolve(code ?? -1));
  });
}

export async function poolFigures(d: PoolBenchDeps): Promise<void> {
  const srt = path.join(d.repo, 'bench', '.tools', 'node_modules', '.bin', 'srt');
  // A figure that cannot be measured fails the run: a table silently missing it would be read as complete.
  if (!existsSync(srt)) throw new Error('srt is not installed for the warm-pool figures: run `sh bench/setup.sh` (npm run bench does)');
  if (process.getuid?.() !== 0) throw new Error('the warm-pool figures need root for the bench\'s own guard: run `sudo npm run bench`');
  const dir = path.join(d.root, 'pool');
  const scope = `bp${d.prefix.replace(/[^a-z0-9]/g, '').slice(-6)}`;
  const socket = path.join(dir, 'guard.sock');
  mkdirSync(dir, { recursive: true });
  const guardEnv = {
    ...process.env,
    COI_GUARD_SOCKET: socket,
    COI_GUARD_SCOPE: scope,
    COI_GUARD_LOCK_DIR: path.join(dir, 'lock'),
    COI_NET_STATE_DIR: path.join(dir, 'state'),
    COI_NET_CACHE_DIR: path.join(dir, 'cache'),
    COI_GUARD_MONITOR: '0',
  };
  const homes = { warm: path.join(dir, 'home-warm'), cold: path.join(dir, 'home-cold') };
  for (const [kind, home] of Object.entries(homes)) {
    mkdirSync(path.join(home, '.coi'), { recursive: true });
    writeFileSync(path.join(home, '.coi', 'config.toml'), `[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[pool]\nsize = ${kind === 'warm' ? 1 : 0}\n`);
  }
  const ws = path.join(dir, 'ws');
  mkdirSync(ws, { recursive: true });
  const env = (home: string) => ({ HOME: home, COI_CONTAINER_PREFIX: d.prefix, COI_GUARD_SOCKET: socket, COI_GUARD_SCOPE: scope });
  const fd = openSync(path.join(dir, 'guard.log'), 'a');
  const guard: ChildProcess = spawn(process.execPath, [d.helper, 'guard', 'run'], { env: guardEnv, stdio: ['ignore', fd, fd] });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 200));
    const warmUp = () => d.must(d.coi(['pool', 'warm', '--wait', '180'], env(homes.warm), ws), 'coi pool warm');
    await warmUp();
    await d.must(d.coi(['run', '--', 'true'], env(homes.cold), ws), 'coi run (first, cold)');
    const srtTrue: number[] = [];
    const runWarm: number[] = [];
    const runCold: number[] = [];
    const shellWarm: number[] = [];
    const shellCold: number[] = [];
    for (let i = 0; i < d.runs; i++) {
      srtTrue.push(await d.time(async () => {
        const code = await run(srt, ['true'], ws);
        if (code !== 0) throw new Error(`srt true exited ${code}`);
      }));
      await warmUp();
      runWarm.push(await d.time(() => d.must(d.coi(['run', '--', 'true'], env(homes.warm), ws), 'warm coi run')));
      runCold.push(await d.time(() => d.must(d.coi(['run', '--', 'true'], env(homes.cold), ws), 'cold coi run')));
      await warmUp();
      let name = '';
      shellWarm.push(await d.time(async () => (name = (await d.must(d.coi(['shell', '--background'], env(homes.warm), ws), 'warm coi shell')).trim())));
      await d.must(d.coi(['kill', name], env(homes.warm), ws), 'coi kill');
      shellCold.push(await d.time(async () => (name = (await d.must(d.coi(['shell', '--background'], env(homes.cold), ws), 'cold coi shell')).trim())));
      await d.must(d.coi(['kill', name], env(homes.cold), ws), 'coi kill');
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
    const vsCold = (w: number[], c: number[]) => `${(med(w) / med(c)).toFixed(2)}× the cold path (${med(c).toFixed(0)} ms)`;
    d.add('warm `coi run -- true` (pool size 1)', 'ms', runWarm, '`srt true` (sandbox-runtime)', srtTrue, vsCold(runWarm, runCold));
    d.add('warm `coi run -- true` (pool size 1)', 'ms', runWarm, 'cold `coi run -- true`, same run', runCold);
    d.add('warm `coi shell --background` to tmux pane', 'ms', shellWarm, '`srt true` (sandbox-runtime)', srtTrue, vsCold(shellWarm, shellCold));
    d.add('warm `coi shell --background` to tmux pane', 'ms', shellWarm, 'cold `coi shell --background`, same run', shellCold);
  } finally {
    await d.coi(['clean'], env(homes.warm), ws).catch(() => undefined);
    guard.kill('SIGTERM');
    await new Promise((r) => guard.once('exit', r));
    // A stopped guard leaves its rules in force; these are the bench's own scope's.
    await removeAllRules(nftExec(), tablesFor(scope)).catch(() => undefined);
  }
}
