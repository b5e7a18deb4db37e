import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cacheDir, cachedResolve } from '../../../helper/config/cache';
import { readConfigInputs } from '../../../helper/config/loader';
import { ConfigInputs, LoadedConfig, resolveConfig } from '../../../helper/config/resolve';
import { withWorld, World } from './world';

/** resolveConfig, counting its calls and keeping the inputs it saw. */
function counting() {
  const seen: ConfigInputs[] = [];
  const resolve = (i: ConfigInputs): LoadedConfig => {
    seen.push(i);
    return resolveConfig(i);
  };
  return { seen, resolve };
}

const richProject =
  '[container]\nimage = "team"\n[network]\nmode = "allowlist"\nallowed_domains = ["registry.npmjs.org"]\n[limits.memory]\nlimit = "4GiB"\n[limits.cpu]\npriority = 3\n' +
  '[monitoring]\nenabled = true\n[[mounts]]\nhost = "./data"\ncontainer = "/data"\n[[mounts]]\nhost = "~/.ssh"\ncontainer = "/ssh"\n[security]\nadditional_protected_paths = ["Makefile"]\n' +
  '[defaults.environment]\nFOO = "bar"\n[tool]\nname = "custom"\nbinary = "mytool"\n[tool.custom]\nargs = ["--x"]\n';

async function twice(w: World, env: Record<string, string> = {}) {
  const c = counting();
  const inputs = await readConfigInputs(w.opts({ env }));
  const first = cachedResolve(inputs, c.resolve);
  const second = cachedResolve(await readConfigInputs(w.opts({ env })), c.resolve);
  return { first, second, calls: c.seen.length, fresh: resolveConfig(inputs) };
}

test('a second load of the same files is the cached one, equal in every value to resolving afresh (warnings, provenance, trust)', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[pool]\nsize = 1\n[git]\nname = "me"\n');
    w.write('ws/.coi/config.toml', richProject);
    w.write('ws/.coi/profiles/fast/config.toml', '[limits.cpu]\ncount = "2"\n');
    w.write('ws/.coi/profiles/fast/CONTEXT.md', 'be quick\n');
    const { first, second, calls, fresh } = await twice(w, { COI_PROFILE: 'fast', COI_NETWORK_MODE: 'restricted' });
    assert.equal(calls, 1, 'resolved once');
    assert.deepStrictEqual(first, fresh);
    assert.deepStrictEqual(second, fresh, 'the cached configuration is the same, key by key (nothing lost in JSON)');
    assert.ok(second.warnings.length > 0, 'the untrusted settings are still reported');
    assert.equal(second.trust.status, 'untrusted');
    assert.equal(second.profile.name, 'fast');
  }));

test('any change of what the configuration is made from resolves again: a file, a COI_ variable, the trust store, the profile', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n');
    const c = counting();
    const load = async (env: Record<string, string> = {}, profile?: string) => cachedResolve(await readConfigInputs(w.opts({ env, ...(profile ? { profile } : {}) })), c.resolve);
    assert.equal((await load()).config.network.mode, 'restricted');
    await load();
    assert.equal(c.seen.length, 1);
    await load({ PATH: '/elsewhere', TERM: 'dumb' });
    assert.equal(c.seen.length, 1, 'variables the configuration does not read change nothing');
    assert.deepEqual(Object.keys(c.seen[0]!.env), [], 'and the resolve never saw them');
    assert.equal((await load({ COI_TRUST_ALL: '1' })).config.network.mode, 'open');
    assert.equal(c.seen.length, 2);
    assert.equal((await load({ COI_IMAGE: 'other' })).config.container.image, 'other');
    assert.equal(c.seen.length, 3);
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n[container]\nimage = "x"\n');
    assert.equal((await load()).config.container.image, 'x');
    assert.equal(c.seen.length, 4);
    writeFileSync(join(w.home, '.coi', 'trust.json'), JSON.stringify({ version: 1, workspaces: { [w.workspace]: { sha256: (await load()).trust.sha256, trusted_at: 'now', settings: [] } } }));
    assert.equal((await load()).config.network.mode, 'open', 'trusted now');
    await assert.rejects(load({}, 'nosuch'), /nosuch/);
  }));

test('a mount whose symlink now points outside the workspace is judged again, not taken from the cache', () =>
  withWorld(async (w) => {
    mkdirSync(join(w.workspace, 'real'));
    symlinkSync(join(w.workspace, 'real'), join(w.workspace, 'data'));
    w.write('ws/.coi/config.toml', '[[mounts]]\nhost = "data"\ncontainer = "/data"\n');
    const c = counting();
    const load = async () => cachedResolve(await readConfigInputs(w.opts()), c.resolve);
    assert.equal((await load()).config.mounts.length, 1, 'inside the workspace: applied');
    assert.equal((await load()).config.mounts.length, 1);
    assert.equal(c.seen.length, 1);
    rmSync(join(w.workspace, 'data'));
    symlinkSync(w.home, join(w.workspace, 'data'));
    const r = await load();
    assert.equal(c.seen.length, 2, 'resolved again');
    assert.equal(r.config.mounts.length, 0, 'outside the workspace now: held back');
    assert.equal(r.trust.status, 'untrusted');
  }));

test('a configuration with errors is never cached, and a broken cache entry is resolved again', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "sideways"\n');
    const c = counting();
    const load = async () => cachedResolve(await readConfigInputs(w.opts()), c.resolve);
    await assert.rejects(load(), /sideways/);
    await assert.rejects(load(), /sideways/);
    assert.equal(c.seen.length, 2);
    assert.equal(existsSync(cacheDir(w.home)) ? readdirSync(cacheDir(w.home)).length : 0, 0);

    w.write('ws/.coi/config.toml', '[container]\nimage = "ok"\n');
    await load();
    const [entry] = readdirSync(cacheDir(w.home));
    writeFileSync(join(cacheDir(w.home), entry!), '{"format":1,"realpaths":[],"loaded":');
    assert.equal((await load()).config.container.image, 'ok');
    assert.equal(c.seen.length, 4, 'the broken entry was not used');
  }));
