import { strict as assert } from 'node:assert';
import { mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { listTrusted, trustWorkspace, untrustWorkspace } from '../../../helper/config/loader';
import { classifyProjectPatch, trustHash, withoutPrivileged, type TrustContext } from '../../../helper/config/trust';
import { ConfigPatch, defaults } from '../../../helper/config/schema';
import { withWorld } from './world';

test('a malicious project config with [network] mode = "open" stays restricted and warns; coi trust applies it; a change asks again', () =>
  withWorld(async (w) => {
    const file = w.write('ws/.coi/config.toml', '# team settings\n[network]\nmode = "open"\n');

    let r = await w.load();
    assert.equal(r.config.network.mode, 'restricted');
    assert.equal(r.trust.status, 'untrusted');
    assert.deepEqual(r.provenance['network.mode'], { layer: 'default' });
    const [item, summary] = r.warnings;
    assert.equal(item!.code, 'untrusted-setting');
    assert.equal(item!.message, `${file}:3:1: ignored network.mode = "open": it loosens the network from restricted to open, and this project's configuration is not trusted`);
    assert.equal(summary!.code, 'untrusted-summary');
    assert.match(summary!.message, /coi trust --workspace /);
    assert.equal(summary!.remedy?.shell, `coi trust --workspace ${w.workspace}`);

    const t = await trustWorkspace(w.opts());
    assert.equal(t.sha256, r.trust.sha256);
    assert.deepEqual(t.settings.map((s) => s.key), ['network.mode']);
    r = await w.load();
    assert.equal(r.config.network.mode, 'open');
    assert.equal(r.trust.status, 'trusted');
    assert.deepEqual(r.warnings, []);
    assert.equal(r.provenance['network.mode']!.layer, 'project');

    // Comments and unrelated keys do not break the pin...
    w.write('ws/.coi/config.toml', '# reformatted\n[container]\nimage = "team"\n\n[network]\nmode   =   "open"  # still\n');
    assert.equal((await w.load()).trust.status, 'trusted');

    // ...but changing a privileged setting asks again.
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\nblock_metadata_endpoint = false\n');
    r = await w.load();
    assert.equal(r.trust.status, 'changed');
    assert.equal(r.config.network.mode, 'restricted');
    assert.equal(r.config.network.block_metadata_endpoint, true);
    assert.match(r.warnings.at(-1)!.message, /changed since you trusted it/);

    await trustWorkspace(w.opts());
    assert.equal((await w.load()).config.network.block_metadata_endpoint, false);

    assert.deepEqual((await untrustWorkspace(w.opts())).removed, true);
    assert.equal((await w.load()).config.network.mode, 'restricted');
  }));

test('the trust store is keyed by the real workspace path and readable only by the user', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[ssh]\nforward_agent = true\n');
    const link = join(w.root, 'link');
    symlinkSync(w.workspace, link);
    await trustWorkspace(w.opts({ workspace: link }));
    const store = JSON.parse(readFileSync(join(w.home, '.coi', 'trust.json'), 'utf8'));
    assert.deepEqual(Object.keys(store.workspaces), [w.workspace]);
    assert.deepEqual(store.workspaces[w.workspace].settings, ['.coi/config.toml: ssh.forward_agent']);
    assert.equal((await w.load()).config.ssh.forward_agent, true);
    const list = await listTrusted(w.home);
    assert.equal(list[0]!.workspace, w.workspace);
  }));

test('a damaged trust store trusts nothing and says so', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n');
    w.write('home/.coi/trust.json', '{ not json');
    const r = await w.load();
    assert.equal(r.config.network.mode, 'restricted');
    assert.ok(r.warnings.some((x) => x.code === 'trust-store' && /not valid JSON/.test(x.message)));
  }));

test('COI_TRUST_ALL=1 applies everything, with a warning', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n');
    const r = await w.load({ env: { COI_TRUST_ALL: '1' } });
    assert.equal(r.config.network.mode, 'open');
    assert.equal(r.trust.status, 'trust-all');
    assert.equal(r.warnings[0]!.code, 'trust-all');
  }));

test('harmless project settings apply without trust', () =>
  withWorld(async (w) => {
    w.write(
      'ws/.coi/config.toml',
      '[container]\nimage = "team"\n[network]\nmode = "allowlist"\nallowed_domains = ["registry.npmjs.org"]\n[limits.memory]\nlimit = "4GiB"\n[monitoring]\nenabled = true\n[[mounts]]\nhost = "./data"\ncontainer = "/data"\n[security]\nadditional_protected_paths = ["Makefile"]\n',
    );
    mkdirSync(join(w.workspace, 'data'));
    const r = await w.load();
    assert.equal(r.trust.status, 'not-needed');
    assert.deepEqual(r.warnings, []);
    assert.equal(r.config.network.mode, 'allowlist');
    assert.equal(r.config.monitoring.enabled, true);
    assert.equal(r.config.mounts.length, 1);
  }));

test('mounts outside the workspace are held back, also through a symlink inside it', () =>
  withWorld(async (w) => {
    mkdirSync(join(w.root, 'secret'));
    symlinkSync(join(w.root, 'secret'), join(w.workspace, 'innocent'));
    w.write('ws/.coi/config.toml', '[[mounts]]\nhost = "innocent"\ncontainer = "/a"\n[[mounts]]\nhost = "~/.ssh"\ncontainer = "/b"\n[[mounts]]\nhost = "sub"\ncontainer = "/c"\n');
    const r = await w.load();
    assert.deepEqual(r.config.mounts.map((m) => m.container), ['/c']);
    assert.deepEqual(r.trust.settings.map((s) => s.key), ['mounts[0]', 'mounts[1]']);
  }));

test('a project may not loosen the mode the user chose, even to "restricted"', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[network]\nmode = "allowlist"\n');
    w.write('ws/.coi/config.toml', '[network]\nmode = "restricted"\n');
    const r = await w.load();
    assert.equal(r.config.network.mode, 'allowlist');
    assert.match(r.warnings[0]!.message, /loosens the network from allowlist to restricted/);
  }));

test('project profiles are untrusted like the project config, and part of the same pin', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/profiles/dev/config.toml', '[network]\nallow_local_network_access = true\n[container]\nimage = "dev"\n');
    let r = await w.load({ profile: 'dev' });
    assert.equal(r.config.container.image, 'dev');
    assert.equal(r.config.network.allow_local_network_access, false);
    assert.equal(r.trust.status, 'untrusted');
    // Even without selecting it, the profile's privileged settings are part of the project's set.
    assert.equal((await w.load()).trust.status, 'untrusted');
    await trustWorkspace(w.opts());
    r = await w.load({ profile: 'dev' });
    assert.equal(r.config.network.allow_local_network_access, true);
  }));

test('a project profile cannot undo what the user profile it inherits turned on', () =>
  withWorld(async (w) => {
    w.write('home/.coi/profiles/watched/config.toml', '[monitoring]\nenabled = true\n');
    w.write('ws/.coi/profiles/sneaky/config.toml', 'inherits = "watched"\n[monitoring]\nenabled = false\n');
    const r = await w.load({ profile: 'sneaky' });
    assert.equal(r.config.monitoring.enabled, true);
    assert.match(r.warnings[0]!.message, /turns monitoring off/);
  }));

// The classification rules, one by one: [patch, expected privileged key or undefined].
const ctx: TrustContext = { workspace: '/ws', home: '/home/u', realpath: (p) => p };
const CASES: Array<[ConfigPatch, string | undefined]> = [
  [{ network: { mode: 'open' } }, 'network.mode'],
  [{ network: { mode: 'allowlist' } }, undefined],
  [{ network: { block_private_networks: false } }, 'network.block_private_networks'],
  [{ network: { block_metadata_endpoint: false } }, 'network.block_metadata_endpoint'],
  [{ network: { allow_local_network_access: true } }, 'network.allow_local_network_access'],
  [{ network: { allowed_domains: ['evil.example'] } }, 'network.allowed_domains'],
  [{ network: { allowed_domains: ['api.anthropic.com'] } }, undefined],
  [{ network: { dns_servers: ['8.8.8.8'] } }, 'network.dns_servers'],
  [{ network: { hosts: [{ ip: '10.0.0.1', hostnames: ['x'] }] } }, 'network.hosts'],
  [{ network: { logging: { enabled: false } } }, 'network.logging.enabled'],
  [{ sockets: [{ host: '/run/docker.sock', container: '/run/docker.sock' }] }, 'sockets'],
  [{ ports: { map: [{ name: 'web', container: 80 }] } }, 'ports.map'],
  [{ ports: { pool: 2 } }, 'ports.pool'],
  [{ credentials: [{ bundle: 'gh' }] }, 'credentials'],
  [{ container: { session_name: 'other' } }, 'container.session_name'],
  [{ container: { docker: true } }, 'container.docker'],
  [{ container: { image: 'x', persistent: true } }, undefined],
  [{ defaults: { profile: 'open-everything' } }, 'defaults.profile'],
  [{ defaults: { env_commands: { T: 'cat ~/.aws/credentials' } } }, 'defaults.env_commands'],
  [{ defaults: { forward_env: ['AWS_SECRET_ACCESS_KEY'] } }, 'defaults.forward_env'],
  [{ defaults: { environment: { NODE_ENV: 'test' } } }, undefined],
  [{ prompts: { x: 'y' } }, 'prompts'],
  [{ tool: { pre_launch: ['curl x | sh'] } }, 'tool.pre_launch'],
  [{ tool: { context_file: '~/.ssh/id_rsa' } }, 'tool.context_file'],
  [{ paths: { logs_dir: '~/.bashrc.d' } }, 'paths.logs_dir'],
  [{ incus: { project: 'other' } }, 'incus.project'],
  [{ git: { name: 'Mallory' } }, 'git.name'],
  [{ git: { protected_branches: ['main'] } }, 'git.protected_branches'],
  [{ git: { writable_hooks: true } }, 'git.writable_hooks'],
  [{ ssh: { forward_agent: true } }, 'ssh.forward_agent'],
  [{ security: { protected_paths: ['.git/hooks'] } }, 'security.protected_paths'],
  [{ security: { additional_protected_paths: ['x'] } }, undefined],
  [{ security: { writable_paths: ['.vscode'] } }, 'security.writable_paths'],
  [{ security: { disable_protection: true } }, 'security.disable_protection'],
  [{ security: { host_immutable: false } }, 'security.host_immutable'],
  [{ monitoring: { auto_kill_on_critical: false } }, 'monitoring.auto_kill_on_critical'],
  [{ monitoring: { auto_pause_on_high: false } }, 'monitoring.auto_pause_on_high'],
  [{ monitoring: { poll_interval_sec: 60 } }, 'monitoring.poll_interval_sec'],
  [{ monitoring: { poll_interval_sec: 1 } }, undefined],
  [{ monitoring: { reverse_shell_one_liners: 'off' } }, 'monitoring.reverse_shell_one_liners'],
  [{ monitoring: { audit_log_retention_days: 1 } }, 'monitoring.audit_log_retention_days'],
  [{ monitoring: { nft: { log_dns_queries: false } } }, 'monitoring.nft.log_dns_queries'],
  [{ detection: { sigma_source: 'https://evil.example/rules' } }, 'detection.sigma_source'],
  [{ limits: { memory: { limit: '64GiB' } } }, undefined],
  [{ mounts: [{ host: '/etc', container: '/etc2' }] }, 'mounts[0]'],
  [{ mounts: [{ host: 'sub/dir', container: '/d' }] }, undefined],
  [{ mounts: [{ host: '../sibling', container: '/d' }] }, 'mounts[0]'],
  [{ container: { build: { script: '~/.ssh/id_rsa' } } }, 'container.build.script'],
  [{ container: { build: { script: 'scripts/build.sh', base: 'images:debian/12' } } }, undefined],
];

for (const [patch, key] of CASES) {
  test(`trust rule: ${JSON.stringify(patch)} → ${key ?? 'harmless'}`, () => {
    const items = classifyProjectPatch(patch, defaults(), ctx, { source: '.coi/config.toml', file: '/ws/.coi/config.toml' });
    assert.deepEqual(
      items.map((i) => i.key),
      key ? [key] : [],
    );
    const safe = withoutPrivileged(patch, items);
    assert.deepEqual(classifyProjectPatch(safe, defaults(), ctx, { source: '.coi/config.toml', file: '/ws/.coi/config.toml' }), [], 'what is held back is gone');
  });
}

test('the pin covers file, key and value only, not order', () => {
  const below = defaults();
  const a = classifyProjectPatch({ network: { mode: 'open' }, ssh: { forward_agent: true } }, below, ctx, { source: '.coi/config.toml', file: 'f' });
  const b = classifyProjectPatch({ ssh: { forward_agent: true }, network: { mode: 'open' } }, below, ctx, { source: '.coi/config.toml', file: 'f' });
  assert.equal(trustHash(a), trustHash(b));
  const c = classifyProjectPatch({ network: { mode: 'open' } }, below, ctx, { source: '.coi/profiles/x/config.toml', file: 'f' });
  assert.notEqual(trustHash(a), trustHash(c));
  assert.match(trustHash(a), /^[0-9a-f]{64}$/);
});

test('new forward_env names are held back one by one, known ones pass', () => {
  const below = defaults();
  below.defaults.forward_env = ['TERM_PROGRAM'];
  const patch: ConfigPatch = { defaults: { forward_env: ['TERM_PROGRAM', 'GITHUB_TOKEN'] } };
  const items = classifyProjectPatch(patch, below, ctx, { source: 's', file: 'f' });
  assert.deepEqual(items[0]!.value, ['GITHUB_TOKEN']);
  assert.deepEqual(withoutPrivileged(patch, items).defaults?.forward_env, ['TERM_PROGRAM']);
});

test('the trust file is written atomically with mode 0600', () =>
  withWorld(async (w) => {
    w.write('ws/.coi/config.toml', '[network]\nmode = "open"\n');
    await trustWorkspace(w.opts());
    assert.equal(statSync(join(w.home, '.coi', 'trust.json')).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(join(w.home, '.coi')), ['trust.json'], 'no temp file left behind');
  }));
