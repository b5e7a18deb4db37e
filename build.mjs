// Bundles the three programs (and, with --tests, every test file) with esbuild.
// Type checking is tsc's job (`npm run typecheck`); esbuild only transpiles.
import * as esbuild from 'esbuild';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync('package.json', 'utf8'));

// The build id: a hash of the helper's sources and the locked dependencies, so
// set-up can tell a guard of other code from its own (see helper/version.ts).
function sourceHash() {
  const h = createHash('sha256');
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) h.update(p).update('\0').update(readFileSync(p)).update('\0');
    }
  };
  walk('helper');
  h.update(readFileSync('package-lock.json'));
  return h.digest('hex').slice(0, 12);
}

const production = process.argv.includes('--production');
const withTests = process.argv.includes('--tests');
const withBench = process.argv.includes('--bench');

const common = {
  bundle: true,
  sourcemap: production ? false : 'linked',
  minify: production,
  logLevel: 'warning',
  target: 'node20',
  define: { __COI_VERSION__: JSON.stringify(version), __COI_BUILD__: JSON.stringify(sourceHash()) },
};

const builds = [
  esbuild.build({
    ...common,
    entryPoints: { extension: 'extension/extension.ts' },
    outdir: 'dist',
    platform: 'node',
    format: 'cjs',
    external: ['vscode'],
  }),
  esbuild.build({
    ...common,
    entryPoints: { 'helper-main': 'helper/main.ts' },
    minify: true,
    outdir: 'dist',
    platform: 'node',
    format: 'cjs',
    // ws has optional native accelerators it probes with require(); they are not installed.
    external: ['bufferutil', 'utf-8-validate'],
  }),
  // The entry point (`coi`, the extension's helper): loads helper-main.js with V8's code cache.
  esbuild.build({
    ...common,
    sourcemap: false,
    entryPoints: { helper: 'helper/loader.ts' },
    outdir: 'dist',
    platform: 'node',
    format: 'cjs',
    banner: { js: '#!/usr/bin/env node' },
  }),
  esbuild.build({
    ...common,
    entryPoints: { webview: 'webview-ui/main.ts' },
    outdir: 'dist',
    platform: 'browser',
    format: 'iife',
    target: 'es2022',
  }),
];

if (withTests) {
  rmSync('out', { recursive: true, force: true });
  builds.push(
    esbuild.build({
      ...common,
      minify: false,
      entryPoints: ['test/**/*.test.ts'],
      outdir: 'out/test',
      outbase: 'test',
      platform: 'node',
      format: 'cjs',
      // Tools the tests drive, loaded from node_modules at run time (esbuild finds its binary relative to itself).
      external: ['bufferutil', 'utf-8-validate', 'playwright-core', 'esbuild'],
    }),
  );
}

if (withBench) {
  builds.push(
    esbuild.build({
      ...common,
      minify: false,
      entryPoints: { bench: 'bench/bench.ts' },
      outdir: 'out/bench',
      platform: 'node',
      format: 'cjs',
      external: ['bufferutil', 'utf-8-validate'],
    }),
  );
}

// Code caches of the previous bundle (see helper/loader.ts) are of no use to this one.
rmSync('dist/.v8-cache', { recursive: true, force: true });
await Promise.all(builds);

// The JSON Schemas the TOML extensions read (package.json "tomlValidation"),
// printed by the helper just built so they come from the same zod schema the
// loader validates with.
for (const kind of ['config', 'profile']) {
  writeFileSync(`dist/coi-${kind}.schema.json`, execFileSync(process.execPath, ['dist/helper.js', 'schema', kind]));
}

// The codicon font for the alert webview: a webview cannot use the workbench's,
// so the stylesheet and font ship in dist/ (served through asWebviewUri).
mkdirSync('dist/codicons', { recursive: true });
for (const f of ['codicon.css', 'codicon.ttf']) copyFileSync(`node_modules/@vscode/codicons/dist/${f}`, `dist/codicons/${f}`);
