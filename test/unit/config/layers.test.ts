import { strict as assert } from 'node:assert';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ENV_KEYS } from '../../../helper/config/env';
import { isCoiError } from '../../../helper/errors';
import { withWorld } from './world';

test('with no files the configuration is the defaults, every value from the default layer', () =>
  withWorld(async (w) => {
    const r = await w.load();
    assert.equal(r.config.network.mode, 'restricted');
    assert.deepEqual(r.files, []);
    assert.equal(r.profile.name, 'default');
    assert.equal(r.trust.status, 'not-needed');
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.provenance['network.mode'], { layer: 'default' });
    assert.deepEqual(r.provenance['limits.runtime.max_duration'], { layer: 'default' });
  }));

test('layer order: defaults < user < project < COI_CONFIG < profile < env < flags', () =>
  withWorld(async (w) => {
    // Each layer sets container.image and one key only it sets; the higher always wins.
    const user = w.write('home/.coi/config.toml', '[container]\nimage = "user"\nstorage_pool = "u"\n');
    const project = w.write('ws/.coi/config.toml', '[container]\nimage = "project"\nalias = "p"\n');
    const extra = w.write('etc/coi.toml', '[container]\nimage = "coi-config"\nshutdown_timeout = 5\n');
    const prof = w.write('home/.coi/profiles/mine/config.toml', '[container]\nimage = "profile"\nready_timeout = 9\n');
    const base = { COI_CONFIG: extra };

    let r = await w.load({ env: base });
    assert.equal(r.config.container.image, 'coi-config');
    assert.deepEqual(r.files, [user, project, extra]);
    r = await w.load({ env: base, profile: 'mine' });
    assert.equal(r.config.container.image, 'profile');
    r = await w.load({ env: { ...base, COI_IMAGE: 'env' }, profile: 'mine' });
    assert.equal(r.config.container.image, 'env');
    r = await w.load({ env: { ...base, COI_IMAGE: 'env' }, profile: 'mine', flags: { container: { image: 'flag' } } });
    assert.equal(r.config.container.image, 'flag');

    assert.deepEqual(r.provenance['container.storage_pool'], { layer: 'user', file: user, line: 3, column: 1 });
    assert.deepEqual(r.provenance['container.alias'], { layer: 'project', file: project, line: 3, column: 1 });
    assert.deepEqual(r.provenance['container.shutdown_timeout'], { layer: 'coi-config', file: extra, line: 3, column: 1 });
    assert.deepEqual(r.provenance['container.ready_timeout'], { layer: 'profile', profile: 'mine', file: prof, line: 3, column: 1 });
    assert.deepEqual(r.provenance['container.image'], { layer: 'flag' });
    assert.equal(r.config.container.persistent, false);
    assert.deepEqual(r.provenance['container.persistent'], { layer: 'default' });

    r = await w.load({ env: { ...base, COI_IMAGE: 'env' } });
    assert.deepEqual(r.provenance['container.image'], { layer: 'env', env: 'COI_IMAGE' });
  }));

test('the lower layers are not read twice when the workspace is HOME or COI_CONFIG is the user file', () =>
  withWorld(async (w) => {
    const user = w.write('home/.coi/config.toml', '[[mounts]]\nhost = "/data"\ncontainer = "/data"\n[network]\nmode = "open"\n');
    const r = await w.load({ workspace: w.home, env: { COI_CONFIG: user } });
    assert.equal(r.config.mounts.length, 1);
    assert.deepEqual(r.files, [user]);
    assert.equal(r.config.network.mode, 'open', "the user's own file is never treated as an untrusted project file");
    assert.equal(r.trust.status, 'not-needed');
  }));

test('every documented COI_* variable sets its key, and empty means unset', () =>
  withWorld(async (w) => {
    const r = await w.load({
      env: { COI_IMAGE: 'img', COI_PERSISTENT: 'true', COI_TOOL: 'opencode', COI_NETWORK_MODE: 'allowlist', COI_INCUS_PROJECT: 'coi', COI_MAX_DURATION: '2h', COI_PROFILE: '' },
    });
    assert.equal(r.config.container.image, 'img');
    assert.equal(r.config.container.persistent, true);
    assert.equal(r.config.tool.name, 'opencode');
    assert.equal(r.config.network.mode, 'allowlist');
    assert.equal(r.config.incus.project, 'coi');
    assert.equal(r.config.limits.runtime.max_duration, '2h');
    assert.equal(r.profile.name, 'default');
    assert.equal(r.provenance['container.persistent']!.env, 'COI_PERSISTENT');
    for (const v of ['0', 'false', 'no', 'off']) assert.equal((await w.load({ env: { COI_PERSISTENT: v } })).config.container.persistent, false);
    assert.deepEqual(
      ENV_KEYS.map((k) => k.env),
      ['COI_IMAGE', 'COI_PERSISTENT', 'COI_TOOL', 'COI_NETWORK_MODE', 'COI_PROFILE', 'COI_INCUS_PROJECT', 'COI_MAX_DURATION'],
    );
  }));

test('COI_PROFILE selects a profile; --profile wins over it and over defaults.profile', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[defaults]\nprofile = "a"\n');
    w.write('home/.coi/profiles/a/config.toml', '[container]\nimage = "a"\n');
    w.write('home/.coi/profiles/b/config.toml', '[container]\nimage = "b"\n');
    w.write('home/.coi/profiles/c/config.toml', '[container]\nimage = "c"\n');
    assert.equal((await w.load()).config.container.image, 'a');
    assert.equal((await w.load({ env: { COI_PROFILE: 'b' } })).config.container.image, 'b');
    assert.equal((await w.load({ env: { COI_PROFILE: 'b' }, profile: 'c' })).config.container.image, 'c');
  }));

test('a broken file never half-applies: one bad key fails the whole load', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[network]\nmode = "allowlist"\n[container]\nimage = "x"\nbogus = 1\n');
    await assert.rejects(w.load(), (e) => isCoiError(e) && /unknown key "bogus"/.test(e.message));
    // A syntax error after valid lines also applies nothing.
    w.write('home/.coi/config.toml', '[network]\nmode = "allowlist"\n[container\n');
    await assert.rejects(w.load(), (e) => isCoiError(e) && /config\.toml:3:\d+: invalid TOML/.test(e.message));
  }));

test('flags are validated like file values', () =>
  withWorld(async (w) => {
    await assert.rejects(
      w.load({ flags: { network: { mode: 'wide' as 'open' } } }),
      (e) => isCoiError(e) && e.message.startsWith('command flags: network.mode: expected one of'),
    );
  }));

test('COI_CONFIG must exist; a relative one is relative to the current directory', () =>
  withWorld(async (w) => {
    await assert.rejects(w.load({ env: { COI_CONFIG: join(w.root, 'missing.toml') } }), (e) => isCoiError(e) && e.code === 'NOT_FOUND' && /COI_CONFIG names/.test(e.message));
    writeFileSync(join(w.root, 'rel.toml'), '[tool]\nname = "aider"\n');
    const r = await w.load({ env: { COI_CONFIG: 'rel.toml' }, cwd: w.root });
    assert.equal(r.config.tool.name, 'aider');
  }));

test('[[mounts.default]] is read as [[mounts]] (the Go tool accepts both)', () =>
  withWorld(async (w) => {
    const f = w.write('home/.coi/config.toml', '[[mounts.default]]\nhost = "/data"\ncontainer = "/data"\nreadonly = true\n');
    const r = await w.load();
    assert.deepEqual(r.config.mounts, [{ host: '/data', container: '/data', readonly: true }]);
    assert.equal(r.provenance.mounts!.file, f);
  }));

test('a missing workspace is an error', () =>
  withWorld(async (w) => {
    await assert.rejects(w.load({ workspace: join(w.root, 'nope') }), (e) => isCoiError(e) && e.code === 'NOT_FOUND');
  }));
