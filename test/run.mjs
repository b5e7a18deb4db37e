// Runs the test suites with node's built-in runner, one process for all so the
// closing "# pass N / # fail N" lines cover everything.
//   node test/run.mjs               all suites (what CI runs)
//   node test/run.mjs unit rpc      only those suites
// Test files are TypeScript under test/<suite>/; build.mjs --tests bundles them to out/test/.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const all = ['unit', 'rpc', 'integration', 'e2e'];
const wanted = process.argv.slice(2).length ? process.argv.slice(2) : all;
for (const s of wanted) if (!all.includes(s)) { console.error(`unknown suite ${s}; suites: ${all.join(', ')}`); process.exit(2); }

const build = spawnSync(process.execPath, ['build.mjs', '--tests'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

function files(dir) {
  let out = [];
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(files(p));
    else if (e.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const testFiles = wanted.flatMap((s) => files(join('out', 'test', s)));
if (testFiles.length === 0) { console.error('no test files found'); process.exit(1); }
const tap = join('out', 'test-results.tap');
const args = ['--enable-source-maps', '--test', '--test-concurrency=1',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=tap', `--test-reporter-destination=${tap}`, ...testFiles];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', env: { ...process.env, COI_TEST: '1' } });
// The closing line CI reads, from the TAP summary (the spec reporter's is decorated).
let passed = 0, failed = 0, skipped = 0;
try {
  const text = readFileSync(tap, 'utf8');
  passed = Number(/^# pass (\d+)$/m.exec(text)?.[1] ?? 0);
  failed = Number(/^# fail (\d+)$/m.exec(text)?.[1] ?? 0) + Number(/^# cancelled (\d+)$/m.exec(text)?.[1] ?? 0);
  skipped = Number(/^# skipped (\d+)$/m.exec(text)?.[1] ?? 0);
} catch { failed = failed || 1; }
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
// In CI nothing may be skipped silently: a skipped test is a missing component.
if (process.env.CI && skipped > 0) console.error(`${skipped} test(s) skipped in CI: every component must be present`);
process.exit(r.status === 0 && failed === 0 && passed > 0 && !(process.env.CI && skipped > 0) ? 0 : 1);
