/**
 * dist/helper.js: starts the helper bundle (dist/helper-main.js) with V8's
 * code cache. Node 20 compiles the 1.7 MB bundle and every function the
 * command calls anew at each start, about a third of a short `coi run`
 * (Node 22's module.enableCompileCache does this; Node 20 has only
 * vm.Script's cachedData).
 *
 * One cache per command (what `coi run` compiles is not what `coi list`
 * compiles), written after the first run of that command, beside the bundle
 * and only by the bundle's owner: a cache is code, trusted as much as the
 * bundle and no more. A cache V8 rejects (another Node, another bundle) is
 * written again. Nothing here may import the rest of the helper: that is
 * what it loads.
 */
import { closeSync, fstatSync, openSync, readFileSync, renameSync, statSync, writeFileSync, mkdirSync, lstatSync } from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';
import * as vm from 'node:vm';

const bundle = path.join(__dirname, 'helper-main.js');

/** The cache file for this command, or undefined when no cache applies. */
export function cacheFileFor(argv: readonly string[], st: { size: number; mtimeMs: number }, nodeVersion: string): string {
  const first = argv[0] ?? '';
  // Commands only (never a path or other user text in a file name).
  const cmd = /^-?-?[a-z][a-z-]{0,31}$/.test(first) ? first.replace(/^-+/, '') : 'other';
  const key = `${st.size.toString(36)}-${Math.floor(st.mtimeMs).toString(36)}-${nodeVersion.replace(/[^0-9.]/g, '')}`;
  return path.join(__dirname, '.v8-cache', `${cmd}.${key}.bin`);
}

/** Whether a cache file may be trusted as code: the bundle's owner's, and writable by nobody else. */
function trusted(file: string, owner: number): boolean {
  try {
    const st = lstatSync(file);
    return st.isFile() && st.uid === owner && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function run(): void {
  // With source maps on (the tests' runs), Node maps stack traces of modules it compiles itself.
  const sourceMaps = process.execArgv.includes('--enable-source-maps') || /--enable-source-maps/.test(process.env.NODE_OPTIONS ?? '') || process.env.COI_CODE_CACHE === '0';
  const fd = sourceMaps ? -1 : openSync(bundle, 'r');
  if (fd < 0) {
    require(bundle);
    return;
  }
  let source: string;
  let st: ReturnType<typeof fstatSync>;
  try {
    st = fstatSync(fd);
    source = readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
  const cacheFile = cacheFileFor(process.argv.slice(2), st, process.version);
  const cached = trusted(cacheFile, st.uid) ? readFileSync(cacheFile) : undefined;
  const script = new vm.Script(Module.wrap(source), { filename: bundle, ...(cached ? { cachedData: cached } : {}) });
  if (!cached || script.cachedDataRejected) {
    process.once('exit', () => {
      // Written by the bundle's owner only; atomically, so a reader never sees half a cache.
      if (process.geteuid?.() !== st.uid) return;
      try {
        const dir = path.dirname(cacheFile);
        mkdirSync(dir, { recursive: true, mode: 0o755 });
        const dst = statSync(dir);
        if (dst.uid !== st.uid || (dst.mode & 0o022) !== 0) return;
        const tmp = `${cacheFile}.${process.pid}`;
        writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
        renameSync(tmp, cacheFile);
      } catch {
        // No cache: the next start compiles, as without one.
      }
    });
  }
  const m = new Module(bundle, module);
  m.filename = bundle;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(__dirname);
  const req = ((id: string) => m.require(id)) as NodeJS.Require;
  const fn = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  fn.call(m.exports, m.exports, req, m, bundle, __dirname);
}

run();
