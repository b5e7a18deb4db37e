/**
 * `npm run bench`: each figure is measured several times, side by side with
 * its physical limit (the bare Incus REST sequence the same work needs) in the
 * same run, and reported as median, spread and the ratio to that baseline.
 * Writes bench/results/latest.json and prints a markdown table.
 *
 * Runs on a machine set up with `coi setup` (base image coi-base). Nothing here
 * sends traffic anywhere but the local Incus socket and the dead-end namespace.
 *
 * `node out/bench/bench.js [figure…]` runs only the named figures (run, shell,
 * warm, list, snapshot, guard, activation, vsix, containment, pool); their results
 * replace those of the same name in latest.json, the others are kept.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IncusClient } from '../helper/incus/client';
import type { StoragePool } from '../helper/incus/types';
import { LABELS } from '../helper/sandbox/labels';
import { SETUP_NAMES } from '../helper/setup/names';
import { poolFigures } from './pool';
import { measureActivation } from './activation';
import { measureContainment } from './containment';
import { firstRender } from './tree-render';
import { zipContentBytes } from './zip';

const REPO = path.resolve(__dirname, '..', '..');
const HELPER = path.join(REPO, 'dist', 'helper.js');
const RUNS = Number(process.env.COI_BENCH_RUNS ?? 5);
const PREFIX = `coi-b${randomBytes(2).toString('hex')}-`;
const incus = new IncusClient();
const FIGURES = ['run', 'shell', 'warm', 'list', 'snapshot', 'guard', 'activation', 'vsix', 'containment', 'pool'] as const;
type FigureId = (typeof FIGURES)[number];
const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const a of asked) {
  if (!(FIGURES as readonly string[]).includes(a)) {
    process.stderr.write(`bench: unknown figure ${JSON.stringify(a)}; figures: ${FIGURES.join(', ')}\n`);
    process.exit(2);
  }
}
const wanted = (f: FigureId) => asked.length === 0 || asked.includes(f);

interface Stat {
  median: number;
  min: number;
  max: number;
  p25: number;
  p75: number;
  n: number;
}
interface Figure {
  name: string;
  unit: string;
  subject: Stat;
  baselineName: string;
  baseline: Stat;
  ratio: number;
  note?: string;
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))]!;
  return { median: q(0.5), min: s[0]!, max: s[s.length - 1]!, p25: q(0.25), p75: q(0.75), n: s.length };
}

async function time(f: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function coi(args: string[], env: NodeJS.ProcessEnv, cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HELPER, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>, what: string): Promise<string> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

let seq = 0;
const rawName = () => `${PREFIX}raw-${seq++}`;

async function rawRunTrue(): Promise<void> {
  const name = rawName();
  await incus.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, start: true }, { timeoutMs: 120_000 });
  await incus.exec(name, ['true']);
  await incus.deleteInstance(name, { force: true });
}

async function rawShell(): Promise<string> {
  const name = rawName();
  await incus.createInstance({ name, source: { type: 'image', alias: SETUP_NAMES.baseImage }, start: true }, { timeoutMs: 120_000 });
  await incus.exec(name, ['tmux', 'new-session', '-d', '-s', 'bench', 'bash -l'], { user: 1000, group: 1000, env: { HOME: '/home/code' } });
  return name;
}

async function cleanup(): Promise<void> {
  for (const i of await incus.listInstances().catch(() => [])) if (i.name.startsWith(PREFIX)) await incus.deleteInstance(i.name, { force: true }).catch(() => undefined);
}

/** CPU ms and RSS of a process over a window. */
function procUsage(pid: number): { cpuMs: number; rssKiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  return { cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / 100, rssKiB: rss };
}

interface GuardCost {
  cpuPct: number;
  rssMiB: number;
}

async function guardCost(guardPid: number, windowMs: number): Promise<GuardCost> {
  const a = procUsage(guardPid);
  await new Promise((r) => setTimeout(r, windowMs));
  const b = procUsage(guardPid);
  return { cpuPct: ((b.cpuMs - a.cpuMs) / windowMs) * 100, rssMiB: b.rssKiB / 1024 };
}

async function main(): Promise<void> {
  const pool = await incus.get<StoragePool>(`/1.0/storage-pools/${SETUP_NAMES.pool}`);
  const driver = pool.driver;
  const root = mkdtempSync('/tmp/coi-bench-');
  // Workspaces live here: the sandbox's user must be able to reach them.
  chmodSync(root, 0o755);
  const home = path.join(root, 'home');
  const ws = path.join(root, 'ws');
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(ws);
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n');
  const env = { HOME: home, COI_CONTAINER_PREFIX: PREFIX };
  const figures: Figure[] = [];
  const add = (name: string, unit: string, subject: number[], baselineName: string, baseline: number[], note?: string) => {
    const s = stat(subject);
    const b = stat(baseline);
    figures.push({ name, unit, subject: s, baselineName, baseline: b, ratio: s.median / b.median, ...(note ? { note } : {}) });
    process.stderr.write(`  ${name}: ${s.median.toFixed(1)} ${unit} vs ${baselineName} ${b.median.toFixed(1)} ${unit}\n`);
  };
  // One sample of CPU per side; memory rides in the note, so the ratio compares like with like.
  const addGuardCost = (name: string, c: GuardCost, baselineName: string, base: GuardCost) =>
    figures.push({
      name,
      unit: '% CPU',
      subject: stat([c.cpuPct]),
      baselineName,
      baseline: stat([base.cpuPct]),
      ratio: base.cpuPct > 0 ? c.cpuPct / base.cpuPct : NaN,
      note: `RSS ${c.rssMiB.toFixed(1)} MiB vs ${base.rssMiB.toFixed(1)} MiB`,
    });

  try {
    process.stderr.write(`bench: ${RUNS} runs each, storage driver ${driver}\n`);
    // Warm the image cache on the pool so the first measured run is not an outlier of unpacking.
    if (wanted('run') || wanted('shell') || wanted('warm')) await rawRunTrue();

    {
      // 1. cold coi run -- true vs create + start + exec true + delete
      if (wanted('run')) {
        const runCoi: number[] = [];
        const runRaw: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          runRaw.push(await time(rawRunTrue));
          runCoi.push(await time(() => must(coi(['run', '--', 'true'], env, ws), 'coi run')));
        }
        add('cold `coi run -- true`', 'ms', runCoi, 'create+start+exec true+delete (REST)', runRaw);
      }

      // 2. coi shell --background until the agent's tmux pane exists vs create + start + exec tmux
      if (wanted('shell')) {
        const shellCoi: number[] = [];
        const shellRaw: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          let raw = '';
          shellRaw.push(await time(async () => (raw = await rawShell())));
          await incus.deleteInstance(raw, { force: true });
          let name = '';
          shellCoi.push(await time(async () => (name = (await must(coi(['shell', '--background'], env, ws), 'coi shell')).trim())));
          await must(coi(['kill', name], env, ws), 'coi kill');
        }
        add('`coi shell --background` to tmux pane', 'ms', shellCoi, 'create+start+exec tmux new-session (REST)', shellRaw, 'coi also waits for boot to settle (systemd), which the bare sequence skips');
      }

      // 3. warm start of a persistent sandbox vs incus start + exec
      if (wanted('warm')) {
        const persistent = (await must(coi(['shell', '--background', '--persistent'], env, ws), 'persistent shell')).trim();
        const warmCoi: number[] = [];
        const warmRaw: number[] = [];
        const rawWarm = rawName();
        await incus.createInstance({ name: rawWarm, source: { type: 'image', alias: SETUP_NAMES.baseImage } }, { timeoutMs: 120_000 });
        for (let i = 0; i < RUNS; i++) {
          await must(coi(['shutdown', persistent], env, ws), 'shutdown persistent');
          warmCoi.push(await time(() => must(coi(['shell', '--background', '--persistent'], env, ws), 'restart persistent')));
          warmRaw.push(
            await time(async () => {
              await incus.setState(rawWarm, 'start');
              await incus.exec(rawWarm, ['true']);
            }),
          );
          await incus.setState(rawWarm, 'stop', { force: true });
        }
        add('warm start of a persistent sandbox to a ready agent', 'ms', warmCoi, 'start+exec true (REST)', warmRaw);
        await must(coi(['kill', persistent], env, ws), 'kill persistent');
      }

      // 4. coi list with 30 sandboxes vs the one REST call it needs
      if (wanted('list')) {
        for (let i = 0; i < 30; i++) {
          await incus.createInstance(
            { name: `${PREFIX}l${i}`, source: { type: 'image', alias: SETUP_NAMES.baseImage }, config: { [LABELS.managed]: 'true', [LABELS.workspace]: `/bench/ws${i}`, [LABELS.slot]: '1', [LABELS.tool]: 'shell', [LABELS.phase]: 'ready' } },
            { timeoutMs: 120_000 },
          );
        }
        const listCoi: number[] = [];
        const listRaw: number[] = [];
        for (let i = 0; i < RUNS; i++) {
          listRaw.push(await time(() => incus.listInstances()));
          listCoi.push(await time(() => must(coi(['list', '--format', 'json'], env, ws), 'coi list')));
        }
        add('`coi list --format json`, 30 sandboxes', 'ms', listCoi, 'GET /1.0/instances?recursion=2', listRaw, 'includes starting node for the CLI');
        // ... and the Sandboxes tree's first render from them, with the workspaces open.
        const renderCoi: number[] = [];
        let nodes = 0;
        for (let i = 0; i < RUNS; i++) {
          const r = await firstRender(HELPER, Array.from({ length: 30 }, (_, k) => `/bench/ws${k}`), env);
          renderCoi.push(r.ms);
          nodes = r.nodes;
        }
        add('Sandboxes tree first render, 30 sandboxes', 'ms', renderCoi, 'GET /1.0/instances?recursion=2', listRaw, `spawning the helper as the extension does, to ${nodes} tree nodes; VS Code's drawing excluded`);
      }

      // 4b. snapshot create and restore of a running sandbox vs the bare Incus calls
      if (wanted('snapshot')) {
        {
          const sb = (await must(coi(['shell', '--background'], env, ws), 'snapshot shell')).trim();
          const raw = rawName();
          await incus.createInstance({ name: raw, source: { type: 'image', alias: SETUP_NAMES.baseImage }, start: true }, { timeoutMs: 120_000 });
          const createCoi: number[] = [];
          const createRaw: number[] = [];
          const restoreCoi: number[] = [];
          const restoreRaw: number[] = [];
          for (let i = 0; i < RUNS; i++) {
            createRaw.push(await time(() => incus.createSnapshot(raw, `b${i}`)));
            createCoi.push(await time(() => must(coi(['snapshot', 'create', `b${i}`, '-c', sb], env, ws), 'coi snapshot create')));
          }
          for (let i = 0; i < RUNS; i++) {
            // A running sandbox is stopped, restored and its agent started again; the bare sequence does the same.
            restoreRaw.push(
              await time(async () => {
                await incus.setState(raw, 'stop', { force: true });
                await incus.restoreSnapshot(raw, `b${i}`);
                await incus.setState(raw, 'start');
                await incus.exec(raw, ['tmux', 'new-session', '-d', '-s', `r${i}`, 'bash -l'], { user: 1000, group: 1000, env: { HOME: '/home/code' } });
              }),
            );
            restoreCoi.push(await time(() => must(coi(['snapshot', 'restore', `b${i}`, '-f', '-c', sb], env, ws), 'coi snapshot restore')));
          }
          add('`coi snapshot create` of a running sandbox', 'ms', createCoi, 'POST /1.0/instances/NAME/snapshots', createRaw);
          add('`coi snapshot restore` of a running sandbox, agent back', 'ms', restoreCoi, 'stop+restore+start+exec tmux (REST)', restoreRaw);
          await must(coi(['kill', sb], env, ws), 'kill snapshot sandbox');
          await incus.deleteInstance(raw, { force: true });
        }
      }

      // 5. guard CPU and memory with 0, 1, 5 and 10 idle sandboxes
      if (wanted('guard')) {
        const info = JSON.parse(await must(coi(['guard', 'status', '--format', 'json'], env, ws), 'guard status')) as { guard: { pid: number } };
        const guardPid = info.guard.pid;
        for (const i of await incus.listInstances()) if (i.name.startsWith(`${PREFIX}l`)) await incus.deleteInstance(i.name, { force: true });
        const idle = await guardCost(guardPid, 5_000);
        const started: string[] = [];
        for (const n of [1, 5, 10]) {
          while (started.length < n) started.push((await must(coi(['shell', '--background'], env, ws), 'idle shell')).trim());
          const c = await guardCost(guardPid, 5_000);
          addGuardCost(`guard with ${n} idle sandbox${n > 1 ? 'es' : ''}`, c, 'guard with none', idle);
          process.stderr.write(`  guard, ${n} idle: ${c.cpuPct.toFixed(2)} % CPU, ${c.rssMiB.toFixed(1)} MiB\n`);
        }
        for (const s of started) await coi(['kill', s], env, ws);

        // 5b. the guard with one monitored sandbox running 100 processes, against the same sandbox idle
        {
          const monHome = path.join(root, 'home-monitored');
          mkdirSync(path.join(monHome, '.coi'), { recursive: true });
          writeFileSync(path.join(monHome, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n\n[monitoring]\nenabled = true\n');
          const monEnv = { ...env, HOME: monHome };
          const sb = (await must(coi(['shell', '--background'], monEnv, ws), 'monitored shell')).trim();
          await new Promise((r) => setTimeout(r, 2_000));
          const quiet = await guardCost(guardPid, 5_000);
          await incus.exec(sb, ['sh', '-c', 'for i in $(seq 100); do sleep 600 & done; true'], { user: 1000, group: 1000 });
          await new Promise((r) => setTimeout(r, 1_000));
          const busy = await guardCost(guardPid, 5_000);
          addGuardCost('guard with 1 monitored sandbox running 100 processes', busy, 'the same sandbox idle', quiet);
          process.stderr.write(`  guard, 100 processes: ${busy.cpuPct.toFixed(2)} % CPU vs ${quiet.cpuPct.toFixed(2)} % idle\n`);
          await coi(['kill', sb], monEnv, ws);
        }
      }

      // 6. extension activation, against the smallest extension there is
      if (wanted('activation')) {
        {
          const a = measureActivation(REPO, RUNS);
          add('extension activation (load + activate)', 'ms', a.ours, 'a one-command extension', a.minimal, 'fresh node per run with an inert `vscode` stand-in; spawns nothing');
        }
      }

      // 7. the .vsix the user downloads (npm run bench packages it first), against the files it carries
      if (wanted('vsix')) {
        const vsix = path.join(REPO, 'dist', 'coi-vscode.vsix');
        try {
          const zip = readFileSync(vsix);
          const content = zipContentBytes(zip);
          figures.push({ name: '.vsix size', unit: 'KiB', subject: stat([zip.length / 1024]), baselineName: `its ${content.files} files, uncompressed`, baseline: stat([content.bytes / 1024]), ratio: zip.length / content.bytes });
        } catch (e) {
          process.stderr.write(`  (.vsix not measured: ${(e as Error).message}; npm run package builds it)\n`);
        }
      }

      // 8. containment: a reverse shell's connect() to the sandbox frozen and stopped; a refused connection to its audit line
      if (wanted('containment')) {
        const t0 = Date.now();
        const m = await measureContainment({ incus, helper: HELPER, prefix: PREFIX, root: path.join(root, 'containment'), runs: RUNS, coi, log: (l) => process.stderr.write(`${l}\n`) });
        add('reverse shell: connect() → sandbox frozen', 'ms', m.connectToFrozen, '`incus pause` alone (REST freeze)', m.incusFreeze, 'freeze through the cgroup first; renamed sh, caught by behaviour');
        add('reverse shell: connect() → sandbox stopped', 'ms', m.connectToStopped, '`incus stop --force` alone (REST)', m.incusStop, 'frozen, then force-stopped (then deleted)');
        add('refused connection → its audit line', 'ms', m.refusedToAuditLine, 'the monitor\'s poll interval', [m.pollIntervalMs], 'kernel log → guard → next poll → fsync\'d line; from perl\'s stamp before connect() to the line in the file');
        process.stderr.write(`  containment figures took ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
      }
    }

    // 8. warm pool: coi run and coi shell with a warm container, against srt true and the cold path
    if (wanted('pool')) await poolFigures({ repo: REPO, helper: HELPER, root, prefix: PREFIX, runs: RUNS, time, coi, must, add });
  } finally {
    await cleanup();
    rmSync(root, { recursive: true, force: true });
  }

  // A selection replaces its own figures and keeps the rest of the last full run.
  const latest = path.join(REPO, 'bench', 'results', 'latest.json');
  if (asked.length) {
    try {
      const prev = JSON.parse(readFileSync(latest, 'utf8')) as { figures?: Figure[] };
      const mine = new Set(figures.map((f) => f.name));
      figures.unshift(...(prev.figures ?? []).filter((f) => !mine.has(f.name)));
    } catch {
      // no earlier results
    }
  }
  const result = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '', memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), storageDriver: driver }, runs: RUNS, at: new Date().toISOString(), figures };
  mkdirSync(path.join(REPO, 'bench', 'results'), { recursive: true });
  writeFileSync(latest, `${JSON.stringify(result, null, 2)}\n`);
  const fmt = (s: Stat) => (s.n > 1 ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : s.median.toFixed(2));
  const lines = [
    `Storage driver: ${driver}; ${result.machine.cpus} × ${result.machine.model}, ${result.machine.memGiB} GiB, kernel ${result.machine.kernel}; ${RUNS} runs; median (min–max).`,
    '',
    '| figure | coi | baseline | baseline value | ratio | note |',
    '|---|---|---|---|---|---|',
    ...figures.map((f) => `| ${f.name} | ${fmt(f.subject)} ${f.unit} | ${f.baselineName} | ${fmt(f.baseline)} ${f.unit} | ${Number.isFinite(f.ratio) ? f.ratio.toFixed(2) : 'n/a'}× | ${f.note ?? ''} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch(async (e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  await cleanup();
  process.exit(1);
});
