import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { listProfiles } from '../../../helper/config/loader';
import { HARDENED_SECRET_PATHS, MAX_INHERITANCE } from '../../../helper/config/profiles';
import { isCoiError } from '../../../helper/errors';
import { withWorld } from './world';

test('inheritance: the child overrides the parent, tables merge deeply, arrays replace, "" deletes an environment key', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[defaults]\nenvironment = { FROM_USER = "1", DROP_ME = "x" }\n');
    w.write(
      'home/.coi/profiles/base/config.toml',
      '[container]\nimage = "base"\npersistent = true\n[network]\nallowed_domains = ["a.example", "b.example"]\n[defaults]\nenvironment = { A = "1", B = "2" }\n[[mounts]]\nhost = "/base"\ncontainer = "/base"\n',
    );
    const child = w.write(
      'home/.coi/profiles/child/config.toml',
      'inherits = "base"\n[container]\nimage = "child"\n[network]\nallowed_domains = ["c.example"]\n[defaults]\nenvironment = { B = "", DROP_ME = "", C = "3" }\n[[mounts]]\nhost = "/child"\ncontainer = "/child"\n',
    );
    const r = await w.load({ profile: 'child' });
    assert.equal(r.config.container.image, 'child');
    assert.equal(r.config.container.persistent, true, 'inherited');
    assert.deepEqual(r.config.network.allowed_domains, ['c.example'], 'arrays replace');
    assert.deepEqual(r.config.defaults.environment, { FROM_USER: '1', A: '1', C: '3' }, '"" deletes from the parent and from the config below');
    assert.deepEqual(
      r.config.mounts.map((m) => m.host),
      ['/child'],
      "within the chain mounts replace the parent's",
    );
    assert.deepEqual(r.profile.chain.map((p) => p.name), ['base', 'child']);
    assert.deepEqual(r.provenance['container.image'], { layer: 'profile', profile: 'child', file: child, line: 3, column: 1 });
    assert.equal(r.provenance['container.persistent']!.profile, 'base');
  }));

test('a profile applied over the config appends its mounts to the user mounts', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[[mounts]]\nhost = "/u"\ncontainer = "/u"\n');
    w.write('home/.coi/profiles/p/config.toml', '[[mounts]]\nhost = "/p"\ncontainer = "/p"\n');
    const r = await w.load({ profile: 'p' });
    assert.deepEqual(r.config.mounts.map((m) => m.host), ['/u', '/p']);
  }));

test('an inheritance cycle is an error naming the cycle', () =>
  withWorld(async (w) => {
    w.write('home/.coi/profiles/a/config.toml', 'inherits = "b"\n');
    w.write('home/.coi/profiles/b/config.toml', 'inherits = "c"\n');
    w.write('home/.coi/profiles/c/config.toml', 'inherits = "a"\n');
    await assert.rejects(w.load({ profile: 'a' }), (e) => isCoiError(e) && /profile inheritance cycle: (a → b → c → a|b → c → a → b|c → a → b → c)/.test(e.message));
    w.write('home/.coi/profiles/self/config.toml', 'inherits = "self"\n');
    await assert.rejects(w.load({ profile: 'self' }), (e) => isCoiError(e) && /cycle: self → self/.test(e.message));
  }));

test(`inheritance is limited to ${MAX_INHERITANCE} levels`, () =>
  withWorld(async (w) => {
    const chain = (n: number, prefix: string) => {
      for (let i = 0; i <= n; i++) w.write(`home/.coi/profiles/${prefix}${i}/config.toml`, i === 0 ? '' : `inherits = "${prefix}${i - 1}"\n`);
    };
    chain(MAX_INHERITANCE, 'ok');
    assert.equal((await w.load({ profile: `ok${MAX_INHERITANCE}` })).profile.chain.length, MAX_INHERITANCE + 1);
    chain(MAX_INHERITANCE + 1, 'deep');
    await assert.rejects(w.load({ profile: `deep${MAX_INHERITANCE + 1}` }), (e) => isCoiError(e) && /more than 10 levels/.test(e.message));
  }));

test('the same profile name in two places is an error naming both paths', () =>
  withWorld(async (w) => {
    const a = w.write('home/.coi/profiles/dup/config.toml', '');
    const b = w.write('ws/.coi/profiles/dup/config.toml', '');
    await assert.rejects(w.load(), (e) => isCoiError(e) && e.message === `profile "dup" is defined twice: ${a} and ${b}`);
    await assert.rejects(listProfiles(w.opts()), (e) => isCoiError(e) && e.message.includes(a) && e.message.includes(b));
  }));

test('a file profile may not shadow a built-in one', () =>
  withWorld(async (w) => {
    const f = w.write('ws/.coi/profiles/hardened/config.toml', '[network]\nmode = "open"\n');
    await assert.rejects(w.load(), (e) => isCoiError(e) && e.message === `profile "hardened" is defined twice: built-in profile "hardened" and ${f}`);
  }));

test('profiles are found beside $COI_CONFIG too', () =>
  withWorld(async (w) => {
    const cfg = w.write('team/config.toml', '');
    w.write('team/profiles/shared/config.toml', '[tool]\nname = "codex"\n');
    const r = await w.load({ env: { COI_CONFIG: cfg }, profile: 'shared' });
    assert.equal(r.config.tool.name, 'codex');
    assert.equal(r.profile.chain[0]!.scope, 'coi-config');
  }));

test('an unknown profile, or inherits of one, is an error listing the profiles', () =>
  withWorld(async (w) => {
    await assert.rejects(w.load({ profile: 'nope' }), (e) => isCoiError(e) && e.code === 'NOT_FOUND' && /no profile "nope" \(profiles: default, hardened\)/.test(e.message));
    const f = w.write('home/.coi/profiles/orphan/config.toml', 'inherits = "ghost"\n');
    await assert.rejects(w.load({ profile: 'orphan' }), (e) => isCoiError(e) && e.message.startsWith(`${f}: profile "orphan" inherits "ghost", which does not exist`));
  }));

test('a misspelled key in a profile names its file:line:column', () =>
  withWorld(async (w) => {
    const f = w.write('home/.coi/profiles/typo/config.toml', 'inherit = "default"\n');
    await assert.rejects(w.load({ profile: 'typo' }), (e) => isCoiError(e) && e.message === `${f}:1:1: unknown key "inherit" at the top level; did you mean "inherits"?`);
  }));

test('built-in hardened: restricted, secrets hidden, monitoring on, ephemeral, 4h, no agent', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[container]\npersistent = true\n[ssh]\nforward_agent = true\n[security]\nsecret_paths = ["my.secret"]\n');
    const r = await w.load({ profile: 'hardened' });
    const c = r.config;
    assert.equal(c.network.mode, 'restricted');
    assert.equal(c.network.block_private_networks, true);
    assert.equal(c.container.persistent, false);
    assert.equal(c.ssh.forward_agent, false);
    assert.equal(c.monitoring.enabled, true);
    assert.equal(c.monitoring.nft.enabled, true);
    assert.equal(c.security.reduce_kernel_surface, true);
    assert.equal(c.security.host_immutable, true);
    assert.equal(c.limits.runtime.max_duration, '4h');
    assert.deepEqual(c.security.secret_paths, ['my.secret', ...HARDENED_SECRET_PATHS]);
    assert.deepEqual(r.provenance['monitoring.enabled'], { layer: 'profile', profile: 'hardened', builtin: true });
  }));

test('hardened keeps an allowlist the user chose (it never loosens)', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[network]\nmode = "allowlist"\n');
    assert.equal((await w.load({ profile: 'hardened' })).config.network.mode, 'allowlist');
  }));

test('a profile may inherit hardened and the built-in default is a no-op', () =>
  withWorld(async (w) => {
    w.write('home/.coi/profiles/strict/config.toml', 'inherits = "hardened"\n[limits.runtime]\nmax_duration = "1h"\n');
    const r = await w.load({ profile: 'strict' });
    assert.equal(r.config.limits.runtime.max_duration, '1h');
    assert.equal(r.config.monitoring.enabled, true);
    const d = await w.load({ profile: 'default' });
    assert.deepEqual(d.config, (await w.load()).config);
  }));

test("a profile's CONTEXT.md comes back with it (and its ancestors')", () =>
  withWorld(async (w) => {
    const ctxA = w.write('home/.coi/profiles/a/CONTEXT.md', '# A\nUse pnpm.\n');
    w.write('home/.coi/profiles/a/config.toml', '');
    w.write('ws/.coi/profiles/b/config.toml', 'inherits = "a"\n');
    const ctxB = w.write('ws/.coi/profiles/b/CONTEXT.md', 'Run make test.\n');
    const r = await w.load({ profile: 'b' });
    assert.deepEqual(r.profile.context, [
      { profile: 'a', file: ctxA, text: '# A\nUse pnpm.\n' },
      { profile: 'b', file: ctxB, text: 'Run make test.\n' },
    ]);
  }));

test('profile list shows built-ins and files with scope, inherits, description and context', () =>
  withWorld(async (w) => {
    const f = w.write('home/.coi/profiles/web/config.toml', 'description = "For the web app"\ninherits = "hardened"\n');
    w.write('home/.coi/profiles/web/CONTEXT.md', 'x');
    const list = await listProfiles(w.opts());
    assert.deepEqual(
      list.map((p) => [p.name, p.scope]),
      [
        ['default', 'builtin'],
        ['hardened', 'builtin'],
        ['web', 'user'],
      ],
    );
    assert.deepEqual(list[2], { name: 'web', scope: 'user', file: f, inherits: 'hardened', description: 'For the web app', hasContext: true });
  }));
