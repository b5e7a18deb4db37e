import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { before, test } from 'node:test';
import { coi, REPO, requireIncus } from './support';

let incusVersion: string | undefined;
before(async () => {
  incusVersion = (await (await requireIncus()).server()).environment?.server_version;
});

test('coi version --format json prints the helper, guard and Incus versions', async () => {
  const r = await coi(['version', '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));
  assert.equal(v.helper.version, pkg.version);
  assert.equal(v.incus.serverVersion, incusVersion);
  assert.equal(v.guard.reachable, true, `the guard set-up started answers: ${JSON.stringify(v.guard)}`);
  assert.equal(v.guard.version, pkg.version);
  const text = await coi(['version']);
  assert.match(text.stdout, new RegExp(`^incus  ${incusVersion!.replace(/\./g, '\\.')} `, 'm'));
});

test('with Incus not running, coi version exits non-zero and says how to start it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'coi-stale-'));
  try {
    // A socket file nobody listens on: what a stopped incusd leaves behind.
    const stale = path.join(dir, 'unix.socket');
    spawnSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
    for (const socket of [stale, path.join(dir, 'missing.socket')]) {
      const r = await coi(['version'], { INCUS_SOCKET: socket });
      assert.equal(r.code, 1, `exit code with ${socket}`);
      assert.match(r.stdout, /incus  unreachable: Incus is not running or not installed/);
      assert.match(r.stderr, /fix: start it with: sudo coi setup/);
    }
    const viaDir = await coi(['version', '--json'], { INCUS_DIR: dir });
    assert.equal(viaDir.code, 1);
    assert.equal(JSON.parse(viaDir.stdout).incus.endpoint, `unix:${stale}`, 'INCUS_DIR is honoured');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('help lists the commands; unknown commands and flags are errors with a hint', async () => {
  const help = await coi(['--help']);
  assert.equal(help.code, 0);
  for (const c of ['version', 'setup', 'guard']) assert.match(help.stdout, new RegExp(`^  ${c} `, 'm'));
  const unknown = await coi(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(unknown.stderr, /coi --help/);
  const badFlag = await coi(['version', '--colour']);
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /Unknown option '--colour'/);
  assert.match(badFlag.stderr, /usage: coi version/);
  const badFormat = await coi(['version', '--format', 'yaml']);
  assert.equal(badFormat.code, 2);
  assert.match(badFormat.stderr, /--format takes text or json, not "yaml"/);
});

test('set-up run again changes nothing and says so for every step', async () => {
  const r = await coi(['setup', '--dead-end-network'], {}, 300_000);
  assert.equal(r.code, 0, r.stderr);
  const steps = r.stdout.split('\n').filter((l) => /^[+=] /.test(l));
  assert.ok(steps.length >= 7, `reports each step:\n${r.stdout}`);
  const changed = steps.filter((l) => l.startsWith('+ '));
  assert.deepEqual(changed, [], `nothing changed on the second run:\n${r.stdout}`);
});
