/**
 * `coi build`: the default agent image, or (`coi build custom`) a derived
 * image from a script. Steps and log lines stream to stderr; the result goes
 * to stdout. Ctrl-C cancels and cleans up; even kill -9 leaves nothing (the
 * build's watchdog cleans up after it).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../../config';
import { CoiError, ErrorCodes } from '../../errors';
import { BuildRequest, BuildResult, defaultCacheDir, ImageBuild } from '../../images/builder';
import type { BuildProgressEvent } from '../../images/progress';
import { customRequest, readScript, requestFromConfig } from '../../images/request';
import { runWatchdog, spawnWatchdog, WATCHDOG_COMMAND } from '../../images/watchdog';
import type { BuildMode } from '../../images/recipe';
import { CliContext, Command, formatOption, parseFlags } from '../command';

const usage = [
  'coi build [--force] [--compression none|gzip|xz] [--offline|--online] [--keep N] [--profile NAME] [--quiet] [--format json]',
  '       coi build custom NAME (--script FILE | --command CMD…) [--base IMAGE] [--compression none|gzip|xz] [--keep N] [--quiet] [--format json]',
].join('\n');

export const buildCommand: Command = {
  name: 'build',
  summary: 'Build the default agent image "coi" (offline when no image server is reachable), or a custom image from a script',
  usage,
  async run(args, ctx) {
    const custom = args[0] === 'custom';
    const { values, positionals } = parseFlags(
      this,
      custom ? args.slice(1) : args,
      {
        force: { type: 'boolean', short: 'f' },
        compression: { type: 'string' },
        offline: { type: 'boolean' },
        online: { type: 'boolean' },
        keep: { type: 'string' },
        profile: { type: 'string' },
        script: { type: 'string' },
        command: { type: 'string', multiple: true },
        base: { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
        format: { type: 'string' },
      },
      custom,
    );
    const format = formatOption(this, values.format);
    const keep = values.keep === undefined ? undefined : Number(values.keep);
    if (values.offline && values.online) throw new CoiError(ErrorCodes.INVALID_INPUT, '--offline and --online exclude each other');
    const mode: BuildMode | undefined = values.offline ? 'offline' : values.online ? 'online' : undefined;
    const home = ctx.env.HOME || os.homedir();
    let req: BuildRequest;
    if (custom) {
      if (positionals.length !== 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `coi build custom takes one image name\nusage: ${usage}`);
      if (!values.script && !values.command?.length) throw new CoiError(ErrorCodes.INVALID_INPUT, `coi build custom needs --script FILE or --command CMD\nusage: ${usage}`);
      const script = values.script ? { text: await readScript(path.resolve(values.script)), file: path.resolve(values.script) } : undefined;
      req = customRequest(positionals[0]!, {
        ...(values.base ? { base: values.base } : {}),
        ...(script ? { script } : {}),
        commands: values.command ?? [],
        force: values.force ?? false,
        ...(values.compression !== undefined ? { compression: values.compression } : {}),
        ...(keep !== undefined ? { keep } : {}),
      });
    } else {
      for (const f of ['script', 'command', 'base'] as const) if (values[f] !== undefined) throw new CoiError(ErrorCodes.INVALID_INPUT, `--${f} belongs to "coi build custom"\nusage: ${usage}`);
      const loaded = await loadConfig({ home, workspace: process.cwd(), env: ctx.env, ...(values.profile ? { profile: values.profile } : {}) });
      for (const w of loaded.warnings) ctx.err(`coi: warning: ${w.message}\n`);
      req = await requestFromConfig(loaded, {
        force: values.force ?? false,
        ...(values.compression !== undefined ? { compression: values.compression } : {}),
        ...(keep !== undefined ? { keep } : {}),
        ...(mode ? { mode } : {}),
      });
    }
    const result = await runBuild(req, ctx, home, values.quiet ?? false);
    if (result === 'cancelled') return 130;
    if (format === 'json') ctx.out(JSON.stringify(result, null, 2) + '\n');
    else {
      const what = result.outcome === 'up-to-date' ? 'up to date' : result.outcome === 'from-cache' ? 'imported from the cache' : 'built';
      ctx.out(`${result.name}: ${what}, image ${result.fingerprint.slice(0, 12)}${result.versionAlias ? ` (${result.versionAlias})` : ''}, ${(result.sizeBytes / 1024 / 1024).toFixed(0)} MiB, ${result.seconds.toFixed(1)} s\n`);
      const tools = Object.entries(result.tools).map(([t, v]) => `${t} ${v}`).join(', ');
      if (tools) ctx.out(`  tools: ${tools}\n`);
      if (result.pruned.length) ctx.out(`  pruned: ${result.pruned.join(', ')}\n`);
      ctx.out(`  log: ${result.log}\n`);
    }
    return 0;
  },
};

/** Runs a build with terminal progress and Ctrl-C handling. */
async function runBuild(req: BuildRequest, ctx: CliContext, home: string, quiet: boolean): Promise<BuildResult | 'cancelled'> {
  const controller = new AbortController();
  const progress = (e: BuildProgressEvent) => {
    if (e.title !== undefined) ctx.err(`coi build: [${e.step}] ${e.title}\n`);
    else if (e.line !== undefined && !quiet) ctx.err(`  ${e.line}\n`);
  };
  const entry = process.argv[1] ?? '';
  const build = new ImageBuild(req, {
    incus: ctx.incus(),
    env: ctx.env,
    home,
    cacheDir: defaultCacheDir(ctx.env),
    logsDir: path.join(home, '.coi', 'logs'),
    progress,
    watchdog: (id, work) => spawnWatchdog(entry, id, work, ctx.env),
  });
  ctx.err(`coi build: build ${build.id} of ${req.name}; log ${build.logPath}\n`);
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // the watchdog cleans up
    ctx.err(`coi build: ${sig}: cancelling and cleaning up (again to quit at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await build.run(controller.signal);
  } catch (e) {
    if (e instanceof CoiError && e.code === ErrorCodes.CANCELLED) {
      ctx.err(`coi build: cancelled; nothing was left behind (log: ${build.logPath})\n`);
      return 'cancelled';
    }
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Hidden: the watchdog a build starts (see images/watchdog.ts). */
export const buildWatchdogCommand: Command = {
  name: WATCHDOG_COMMAND,
  summary: 'internal: cleans up after a build whose process died',
  usage: `coi ${WATCHDOG_COMMAND} PID BUILD-ID WORKDIR`,
  hidden: true,
  async run(args, ctx) {
    const [pid, id, work] = args;
    if (!pid || !id || !work) return 2;
    await runWatchdog(ctx.incus(), Number(pid), id, work);
    return 0;
  },
};
