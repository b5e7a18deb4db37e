import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ImageEntry, isVersionOf, orphanImages, prunePlan, validImageName, versionAlias } from '../../../helper/images/aliases';
import { BuildReporter, lineSplitter, pruneLogs } from '../../../helper/images/progress';
import { compressionOf, customRequest, keepOf } from '../../../helper/images/request';

test('version aliases are UTC timestamps, with a suffix when one is taken', () => {
  const t = new Date(Date.UTC(2026, 10, 27, 5, 3, 9));
  assert.equal(versionAlias('coi', t, new Set()), 'coi-20261127-050309');
  assert.equal(versionAlias('coi', t, new Set(['coi-20261127-050309'])), 'coi-20261127-050309-2');
  assert.equal(versionAlias('coi', t, new Set(['coi-20261127-050309', 'coi-20261127-050309-2'])), 'coi-20261127-050309-3');
});

test('a version of coi is not coi-base, nor a version of another image', () => {
  assert.ok(isVersionOf('coi', 'coi-20261127-050309'));
  assert.ok(isVersionOf('coi', 'coi-20261127-050309-2'));
  assert.ok(!isVersionOf('coi', 'coi-base'));
  assert.ok(!isVersionOf('coi', 'coi'));
  assert.ok(!isVersionOf('coi', 'coi-test-20261127-050309'));
  assert.ok(isVersionOf('coi-test', 'coi-test-20261127-050309'));
});

test('prune keeps the newest N versions and whatever the main alias points at; shared images stay', () => {
  const all = [
    { name: 'coi', target: 'f2' },
    { name: 'coi-20260101-000000', target: 'f1' },
    { name: 'coi-20260102-000000', target: 'f2' },
    { name: 'coi-20260103-000000', target: 'f3' },
    { name: 'coi-20260104-000000', target: 'f4' },
    { name: 'coi-20260104-000000-2', target: 'f5' },
    { name: 'coi-base', target: 'b' },
    { name: 'mine', target: 'f3' },
  ];
  const plan = prunePlan('coi', all, 2);
  // Newest two: -000000-2 (f5) and 20260104-000000 (f4); main (f2) kept; f1 and f3 dropped.
  assert.deepEqual(plan.aliases.sort(), ['coi-20260101-000000', 'coi-20260103-000000']);
  assert.deepEqual(plan.images, ['f1'], 'f3 still has the alias "mine"');
  assert.deepEqual(prunePlan('coi', all, 10), { aliases: [], images: [] });
  assert.deepEqual(prunePlan('coi', [{ name: 'coi-20260101-000000', target: 'x' }], 0).aliases, [], 'at least one version is kept');
});

test('orphan images: our build id, no alias, builder gone', () => {
  const imgs: ImageEntry[] = [
    { fingerprint: 'a', aliases: [], properties: { 'coi.build-id': '1', 'coi.build-pid': '10' } },
    { fingerprint: 'b', aliases: [], properties: { 'coi.build-id': '2', 'coi.build-pid': '20' } },
    { fingerprint: 'c', aliases: ['coi'], properties: { 'coi.build-id': '3', 'coi.build-pid': '10' } },
    { fingerprint: 'd', aliases: [], properties: {} },
  ];
  assert.deepEqual(orphanImages(imgs, (pid) => pid === 20), ['a']);
});

test('image names: aliases we can version', () => {
  assert.ok(validImageName('test'));
  assert.ok(validImageName('coi-myproject'));
  assert.ok(!validImageName('-x'));
  assert.ok(!validImageName('a b'));
  assert.ok(!validImageName('x-20260101-000000'), 'would look like a version');
});

test('build requests: compression, keep and custom names are checked', () => {
  assert.equal(compressionOf(undefined), 'none');
  assert.equal(compressionOf(''), 'none');
  assert.equal(compressionOf('xz'), 'xz');
  assert.throws(() => compressionOf('zip'), /none, gzip or xz/);
  assert.equal(keepOf(undefined), 3);
  assert.throws(() => keepOf(0), /from 1 to 100/);
  const r = customRequest('test', { script: { text: 'touch /m' } });
  assert.equal(r.kind, 'custom');
  assert.equal(r.base, 'coi');
  assert.throws(() => customRequest('coi', { commands: ['x'] }), /default image/);
  assert.throws(() => customRequest('a b', { commands: ['x'] }), /cannot be an image name/);
});

test('the reporter writes steps and clean lines to the log and names the failed step', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coi-rep-'));
  try {
    const events: unknown[] = [];
    const r = new BuildReporter('b1', path.join(dir, 'logs', 'build-b1.log'), (e) => events.push(e));
    r.begin('packages', 'apt');
    r.line('\x1b[1mUnpacking x\x1b[0m\r');
    r.line('   ');
    const err = r.fail(new Error('boom'));
    r.close();
    assert.deepEqual(events, [
      { buildId: 'b1', step: 'packages', title: 'apt' },
      { buildId: 'b1', step: 'packages', line: 'Unpacking x' },
    ]);
    assert.match(err.message, /build step "packages" failed: boom/);
    assert.equal(err.details?.step, 'packages');
    const log = readFileSync(path.join(dir, 'logs', 'build-b1.log'), 'utf8');
    assert.match(log, /==> \[packages\] apt/);
    assert.match(log, /!!! \[packages\] failed: boom/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('line splitter keeps partial lines until they end', () => {
  const lines: string[] = [];
  const s = lineSplitter((l) => lines.push(l));
  s.push('a\nb');
  s.push('c\r\nd');
  s.flush();
  assert.deepEqual(lines, ['a', 'bc', 'd']);
});

test('old build logs are pruned, newest kept', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coi-logs-'));
  try {
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(path.join(dir, `build-2026010${i}-000000-aaaaaa.log`), '');
    writeFileSync(path.join(dir, 'other.log'), '');
    pruneLogs(dir, 2);
    assert.deepEqual(readdirSync(dir).sort(), ['build-20260103-000000-aaaaaa.log', 'build-20260104-000000-aaaaaa.log', 'other.log']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
