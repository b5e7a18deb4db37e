/**
 * The real bundle (dist/helper.js, built by `node build.mjs`, which test/run.mjs
 * runs first) in a temporary HOME and workspace.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { withWorld, type World } from './world';

const helper = resolve(__dirname, '../../../../dist/helper.js');

function coi(w: World, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [helper, ...args], {
    cwd: w.workspace,
    env: { PATH: process.env.PATH ?? '', HOME: w.home, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('the bundle exists (build with node build.mjs)', () => {
  assert.ok(existsSync(helper), `${helper} missing`);
});

test('coi config show --format json: effective configuration and which layer set each value', () =>
  withWorld(async (w) => {
    const user = w.write('home/.coi/config.toml', '[limits.memory]\nlimit = "2GiB"\n');
    const project = w.write('ws/.coi/config.toml', '[container]\nimage = "team"\n[network]\nmode = "open"\n');
    const r = coi(w, ['config', 'show', '--format', 'json'], { COI_TOOL: 'opencode' });
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.workspace, w.workspace);
    assert.deepEqual(j.files, [user, project]);
    assert.equal(j.config.container.image, 'team');
    assert.equal(j.config.network.mode, 'restricted');
    assert.equal(j.config.tool.name, 'opencode');
    assert.equal(j.config.limits.memory.limit, '2GiB');
    assert.deepEqual(j.provenance['container.image'], { layer: 'project', file: project, line: 2, column: 1 });
    assert.deepEqual(j.provenance['limits.memory.limit'], { layer: 'user', file: user, line: 2, column: 1 });
    assert.deepEqual(j.provenance['tool.name'], { layer: 'env', env: 'COI_TOOL' });
    assert.deepEqual(j.provenance['network.mode'], { layer: 'default' });
    assert.equal(j.trust.status, 'untrusted');
    // The warning is on stderr, so stdout stays JSON.
    assert.match(r.err, /coi: warning: .*config\.toml:4:1: ignored network\.mode = "open"/);
    assert.match(r.err, /fix: Trust this project's configuration: coi trust --workspace /);
  }));

test('coi trust, then config show applies it; coi untrust withdraws it; trust --list lists it', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n');
    let r = coi(w, ['trust']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^trusted .* \(sha256 [0-9a-f]{64}\); these project settings now apply:\n.*network\.mode = "open"/);
    r = coi(w, ['config', 'show', '--format', 'json']);
    assert.equal(JSON.parse(r.out).config.network.mode, 'open');
    assert.equal(r.err, '');
    r = coi(w, ['trust', '--list', '--format', 'json']);
    assert.equal(JSON.parse(r.out)[0].workspace, w.workspace);
    assert.equal(coi(w, ['untrust']).code, 0);
    assert.equal(JSON.parse(coi(w, ['config', 'show', '--json']).out).config.network.mode, 'restricted');
  }));

test('coi config show (text) prints key = value with its source', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[network]\nmode = "allowlist"\n');
    const r = coi(w, ['config', 'show', '--profile', 'hardened']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^# profile {4}hardened$/m);
    assert.match(r.out, /^network\.mode = "allowlist" +# user .*config\.toml:2:1$/m);
    assert.match(r.out, /^monitoring\.enabled = true +# profile hardened \(built-in\)$/m);
    assert.match(r.out, /^container\.image = "coi" +# default$/m);
  }));

test('a misspelled key fails with exit code 2 and file:line:column on stderr', () =>
  withWorld(async (w) => {
    const f = w.write('ws/.coi/config.toml', '[container]\npersistant = true\n');
    const r = coi(w, ['config', 'show']);
    assert.equal(r.code, 2);
    assert.equal(r.out, '');
    assert.ok(r.err.startsWith(`coi: ${f}:2:1: unknown key "persistant" in [container]; did you mean "container.persistent"?`), r.err);
  }));

test('coi profile list and info', () =>
  withWorld(async (w) => {
    w.write('home/.coi/profiles/web/config.toml', 'inherits = "hardened"\n[container]\nimage = "web"\n');
    let r = coi(w, ['profile', 'list', '--format', 'json']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(
      JSON.parse(r.out).map((p: { name: string }) => p.name),
      ['default', 'hardened', 'web'],
    );
    r = coi(w, ['profile', 'info', 'web', '--format', 'json']);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.deepEqual(j.chain.map((p: { name: string }) => p.name), ['hardened', 'web']);
    assert.equal(j.settings['container.image'].value, 'web');
    assert.equal(j.settings['monitoring.enabled'].source.profile, 'hardened');
    assert.equal(j.settings['network.mode'].value, 'restricted');
    r = coi(w, ['profile', 'info', 'web']);
    assert.match(r.out, /^container\.image = "web" +# profile web .*config\.toml:3:1$/m);
  }));

test('coi schema config prints the JSON Schema the build ships in dist/', () =>
  withWorld(async (w) => {
    const r = coi(w, ['schema', 'config']);
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(r.out);
    assert.equal(s.properties.network.properties.mode.default, 'restricted');
    const shipped = resolve(__dirname, '../../../../dist/coi-config.schema.json');
    assert.deepEqual(JSON.parse(readFileSync(shipped, 'utf8')), s);
    const pkg = JSON.parse(readFileSync(resolve(__dirname, '../../../../package.json'), 'utf8'));
    assert.deepEqual(pkg.contributes.tomlValidation, [
      { fileMatch: '.coi/config.toml', url: './dist/coi-config.schema.json' },
      { fileMatch: '.coi/profiles/*/config.toml', url: './dist/coi-profile.schema.json' },
    ]);
  }));
