/**
 * Extension activation, measured in a fresh node process per run: the time to
 * load dist/extension.js and run its activate(). VS Code itself is not in the
 * loop (starting a VS Code per run would measure VS Code); the `vscode` module
 * is an inert stand-in whose every member answers at once, so what is measured
 * is our own module load and registration work.
 *
 * The baseline is the smallest real extension: one that registers one command,
 * loaded and activated the same way. The ratio is what our activation costs on
 * top of the least any extension pays.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

// Runs in the child: stub `vscode`, load the module, activate, print ms.
const PROBE = String.raw`
const Module = require('node:module');
const inert = new Proxy(function () {}, {
  get(_t, p) {
    if (p === 'then') return undefined;
    if (p === Symbol.toPrimitive) return () => '0';
    if (p === Symbol.iterator) return function* () {};
    return inert;
  },
  set() { return true; },
  defineProperty() { return true; },
  apply() { return inert; },
  construct() { return inert; },
});
// The bundle copies the module's own names (esbuild's ESM interop), so the
// stand-in has the API's top-level names as own properties.
const api = {};
for (const k of JSON.parse(process.argv[3])) api[k] = inert;
const load = Module._load;
Module._load = function (request, ...rest) { return request === 'vscode' ? api : load.call(this, request, ...rest); };
const file = process.argv[1];
const root = process.argv[2];
const context = {
  subscriptions: { push() {} },
  extensionPath: root,
  extensionUri: inert,
  asAbsolutePath: (p) => require('node:path').join(root, p),
  extension: { packageJSON: require(require('node:path').join(root, 'package.json')) },
  globalState: inert, workspaceState: inert, secrets: inert, environmentVariableCollection: inert,
  globalStorageUri: inert, storageUri: inert, logUri: inert, extensionMode: 1,
};
const t = process.hrtime.bigint();
const ext = require(file);
const r = ext.activate(context);
Promise.resolve(r).then(() => {
  process.stdout.write(String(Number(process.hrtime.bigint() - t) / 1e6));
  process.exit(0);
});
`;

const MINIMAL = `exports.activate = (ctx) => { ctx.subscriptions.push(require('vscode').commands.registerCommand('x.hello', () => undefined)); };\n`;

/** The top-level names of the `vscode` API, from its type declarations. */
function apiNames(repo: string): string[] {
  const dts = readFileSync(path.join(repo, 'node_modules', '@types', 'vscode', 'index.d.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of dts.matchAll(/^\t?export (?:namespace|class|enum|const|function) (\w+)/gm)) names.add(m[1]!);
  return [...names];
}

function probe(file: string, root: string, names: string): number {
  const r = spawnSync(process.execPath, ['-e', PROBE, file, root, names], { encoding: 'utf8', timeout: 30_000 });
  const ms = Number(r.stdout);
  if (r.status !== 0 || !Number.isFinite(ms)) throw new Error(`activation probe of ${file} failed (${r.status}): ${r.stderr.trim().slice(0, 500)}`);
  return ms;
}

export function measureActivation(repo: string, runs: number): { ours: number[]; minimal: number[] } {
  const dir = mkdtempSync('/tmp/coi-bench-ext-');
  try {
    const minimal = path.join(dir, 'extension.js');
    writeFileSync(minimal, MINIMAL);
    writeFileSync(path.join(dir, 'package.json'), '{"name":"minimal","version":"0.0.0"}\n');
    const names = JSON.stringify(apiNames(repo));
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < runs; i++) {
      base.push(probe(minimal, dir, names));
      ours.push(probe(path.join(repo, 'dist', 'extension.js'), repo, names));
    }
    return { ours, minimal: base };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
