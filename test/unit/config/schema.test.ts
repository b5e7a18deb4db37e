import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { configJsonSchema } from '../../../helper/config/jsonschema';
import { configSchema, crossFieldProblems, defaults, DEFAULT_PROTECTED_PATHS, parseDuration, profileSchema } from '../../../helper/config/schema';

function patch(path: string, value: unknown): Record<string, unknown> {
  const segs = path.split('.');
  const root: Record<string, unknown> = {};
  let t = root;
  segs.slice(0, -1).forEach((s) => (t = t[s] = {} as Record<string, unknown>));
  t[segs[segs.length - 1]!] = value;
  return root;
}

const valid = (path: string, value: unknown) => configSchema().safeParse(patch(path, value)).success;

test('defaults() are the reference defaults', () => {
  const d = defaults();
  assert.equal(d.network.mode, 'restricted');
  assert.equal(d.network.block_private_networks, true);
  assert.equal(d.network.block_metadata_endpoint, true);
  assert.deepEqual(d.network.allowed_domains, ['registry.npmjs.org', 'npm.pkg.github.com', 'api.anthropic.com', 'platform.claude.com']);
  assert.equal(d.network.refresh_interval_minutes, 30);
  assert.equal(d.container.persistent, false);
  assert.equal(d.container.shutdown_timeout, 60);
  assert.equal(d.container.ready_timeout, 30);
  assert.equal(d.tool.name, 'claude');
  assert.equal(d.tool.permission_mode, 'bypass');
  assert.equal(d.tool.auto_context, true);
  assert.equal(d.tool.claude.effort_level, undefined);
  assert.equal(d.defaults.env_command_timeout, '30s');
  assert.equal(d.incus.code_uid, 1000);
  assert.equal(d.incus.project, 'default');
  assert.equal(d.shell.use_tmux, true);
  assert.deepEqual(d.security.protected_paths, DEFAULT_PROTECTED_PATHS);
  assert.equal(d.security.host_immutable, true);
  assert.deepEqual(d.git.protected_branches, ['main', 'master']);
  assert.equal(d.monitoring.enabled, false);
  assert.equal(d.monitoring.poll_interval_sec, 2);
  assert.equal(d.monitoring.nft.rate_limit_per_second, 100);
  assert.equal(d.limits.memory.enforce, 'hard', 'a limit the user sets is enforced (the Go coi defaulted to soft)');
  assert.equal(d.limits.memory.swap, true);
  assert.equal(d.limits.runtime.auto_stop, true);
  assert.equal(d.limits.runtime.max_processes, 0);
  assert.equal(d.limits.cpu.priority, undefined);
  assert.equal(d.timezone.mode, 'host');
  assert.deepEqual(d.snapshots, { auto: false, keep: 3 });
  assert.deepEqual(d.pool, { size: 0 });
  assert.equal(d.ssh.forward_agent, false);
});

test('defaults() returns a fresh object every time', () => {
  const a = defaults();
  a.network.allowed_domains.push('evil.example');
  a.defaults.environment.X = '1';
  assert.equal(defaults().network.allowed_domains.length, 4);
  assert.deepEqual(defaults().defaults.environment, {});
});

test('unknown keys are errors at every depth', () => {
  assert.equal(valid('netwrok.mode', 'open'), false);
  assert.equal(valid('network.mdoe', 'open'), false);
  assert.equal(valid('limits.cpu.cores', '2'), false);
  assert.equal(configSchema().safeParse({ mounts: [{ host: '/a', container: '/a', ro: true }] }).success, false);
  assert.equal(profileSchema().safeParse({ inherits: 'x', network: { mode: 'open' } }).success, true);
  assert.equal(configSchema().safeParse({ inherits: 'x' }).success, false, 'inherits belongs to profiles only');
});

// [key, accepted values, rejected values]
const RULES: Array<[string, unknown[], unknown[]]> = [
  ['limits.cpu.count', ['', '2', '0-3', '0-3,6', '1,3,5-7'], ['two', '2-', '-1', '1,,2', ' 2', 2]],
  ['limits.cpu.allowance', ['', '50%', '100%', '25ms/100ms'], ['0%', '101%', '50', '25ms', '100ms/25ms', '0ms/100ms', '50 %']],
  ['limits.cpu.priority', [0, 5, 10], [-1, 11, 2.5, '5']],
  ['limits.memory.limit', ['', '128MiB', '2GiB', '512MB', '1TB', '50%', '100%'], ['2G', '0MiB', '0%', '150%', '2 GiB', 'lots', 2048]],
  ['limits.memory.enforce', ['soft', 'hard'], ['medium', '']],
  ['limits.memory.swap', [true, false, 'true', 'false'], ['yes', 1]],
  ['limits.disk.read', ['', '50MiB', '10MB', '1000iops', '1.5GB'], ['fast', '50', '10 MB', 'iops']],
  ['limits.disk.write', ['', '20MiB'], ['20Mbit']],
  ['limits.disk.max', ['', '100iops'], ['100IOPS']],
  ['limits.disk.priority', [0, 10], [11, -1]],
  ['limits.disk.size', ['', '20GiB', '500MB'], ['20', 'big']],
  ['limits.disk.tmpfs_size', ['', '1GiB', '25%'], ['1G']],
  ['limits.runtime.max_duration', ['', '20s', '4h', '1h30m', '1.5h', '500ms'], ['0s', '0', '20', '4 h', '-1h', '1d', 'forever']],
  ['limits.runtime.max_processes', [0, 50], [-1, 1.5]],
  ['defaults.env_command_timeout', ['30s', '2m'], ['', '0s', '30']],
  ['network.mode', ['restricted', 'allowlist', 'open'], ['closed', 'Open', '']],
  ['network.backend', ['nftables', 'firewalld'], ['iptables']],
  ['network.allowed_domains', [['example.com', '10.0.0.0/8', '1.2.3.4', 'api.example.com:443']], [['*.example.com'], ['bad domain'], ['1.2.3.4/33'], ['example.com:0']]],
  ['network.dns_servers', [['1.1.1.1']], [['dns.example.com'], ['300.1.1.1']]],
  ['network.allowed_ports', [[443, 80]], [[0], [70000]]],
  ['network.refresh_interval_minutes', [1, 30], [0]],
  ['network.hosts', [[{ ip: '10.0.0.5', hostnames: ['db.local'], ports: [5432] }]], [[{ ip: '10.0.0.5', hostnames: [] }], [{ ip: 'x', hostnames: ['a'] }]]],
  ['tool.name', ['claude', 'opencode', 'aider', 'codex', 'pi', 'omp', 'custom'], ['cursor', '']],
  ['tool.permission_mode', ['bypass', 'interactive'], ['auto']],
  ['tool.claude.effort_level', ['low', 'medium', 'high', 'xhigh', 'max', 'auto'], ['extreme']],
  ['container.alias', ['', 'work', 'a_b-1'], ['1abc', 'has space', 'x'.repeat(65)]],
  ['container.stale_base_check', ['warn', 'error', 'off'], ['ignore']],
  ['container.image', ['coi', 'my-image'], ['']],
  ['container.shutdown_timeout', [1, 60], [0, -5, 1.5]],
  ['container.build.compression', ['', 'none', 'xz', 'gzip'], ['rar']],
  ['container.build.agents', [['claude', 'codex']], [['vim']]],
  ['defaults.profile', ['', 'hardened', 'my.profile-1'], ['-bad', 'a/b']],
  ['defaults.forward_env', [['GITHUB_TOKEN', '_X']], [['1BAD'], ['A-B']]],
  ['defaults.environment', [{ FOO: 'bar', EMPTY: '' }], [{ 'NOT-VALID': 'x' }, { FOO: 1 }]],
  ['incus.code_uid', [1000, 1], [0, -1, 1.5]],
  ['monitoring.reverse_shell_one_liners', ['critical', 'warn', 'off'], ['high']],
  ['monitoring.poll_interval_sec', [1, 0.5], [0, -1]],
  ['monitoring.audit_log_retention_days', [1, 30], [0]],
  ['timezone.mode', ['host', 'fixed', 'utc'], ['local']],
  ['security.protected_paths', [['.git/hooks', 'a/b']], [['/etc'], ['../x'], ['a/../../b'], ['']]],
  ['security.writable_paths', [['.vscode']], [['/abs']]],
  ['mounts', [[{ host: '~/data', container: '/data' }, { host: '/x', container: '/y', readonly: true, shift: false }]], [[{ host: '/x', container: 'relative' }], [{ host: '', container: '/y' }], [{ host: '/x' }]]],
  ['sockets', [[{ host: '/run/docker.sock', container: '/run/docker.sock', env: 'DOCKER_HOST' }]], [[{ host: '/a', container: '/b', env: 'not valid' }]]],
  ['ports.pool', [0, 10], [11, -1]],
  ['ports.map', [[{ name: 'web', container: 3000 }]], [[{ name: 'web', container: 0 }], [{ name: '1web', container: 80 }]]],
  ['credentials', [[{ bundle: 'gh' }, { host: '~/.x', container: '/home/code/.x', mode: '0600' }]], [[{}], [{ bundle: 'gh', host: '/a', container: '/b' }], [{ host: '/a' }]]],
  ['snapshots.keep', [1, 3, 100], [0, 101]],
  ['pool.size', [0, 4, 32], [-1, 33]],
];

for (const [key, good, bad] of RULES) {
  test(`validation: ${key}`, () => {
    for (const v of good) assert.ok(valid(key, v), `${key} = ${JSON.stringify(v)} should be accepted`);
    for (const v of bad) assert.ok(!valid(key, v), `${key} = ${JSON.stringify(v)} should be rejected`);
  });
}

test('durations parse like Go durations', () => {
  assert.equal(parseDuration('20s'), 20_000);
  assert.equal(parseDuration('4h'), 4 * 3_600_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('1.5s'), 1_500);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1d'), undefined);
  assert.equal(parseDuration(''), undefined);
});

test('cross-key rules: a fixed time zone needs a real IANA name; a custom tool needs a binary', () => {
  const c = defaults();
  c.timezone.mode = 'fixed';
  assert.match(crossFieldProblems(c)[0]![1], /needs timezone\.name/);
  c.timezone.name = 'Mars/Olympus';
  assert.match(crossFieldProblems(c)[0]![1], /not an IANA time zone/);
  c.timezone.name = 'Europe/Berlin';
  assert.deepEqual(crossFieldProblems(c), []);
  c.tool.name = 'custom';
  assert.match(crossFieldProblems(c)[0]![1], /needs tool\.binary/);
});

test('the JSON Schema is strict, carries defaults, descriptions and value patterns, and leaves defaulted keys optional', () => {
  const s = configJsonSchema('config') as {
    $schema: string;
    additionalProperties: boolean;
    required?: string[];
    properties: Record<string, { additionalProperties?: boolean; required?: string[]; properties: Record<string, { default?: unknown; enum?: string[]; description?: string; pattern?: string; properties?: Record<string, { pattern?: string }> }> }>;
  };
  assert.match(s.$schema, /draft-07/);
  assert.equal(s.additionalProperties, false);
  assert.equal(s.required, undefined);
  const net = s.properties.network!;
  assert.equal(net.additionalProperties, false);
  assert.deepEqual(net.properties.mode!.enum, ['restricted', 'allowlist', 'open']);
  assert.equal(net.properties.mode!.default, 'restricted');
  assert.ok(net.properties.mode!.description);
  const limits = s.properties.limits!;
  assert.ok(new RegExp(limits.properties.runtime!.properties!.max_duration!.pattern!).test('4h'));
  assert.ok(!new RegExp(limits.properties.runtime!.properties!.max_duration!.pattern!).test('4 hours'));
  const profile = configJsonSchema('profile') as { properties: Record<string, unknown> };
  assert.ok(profile.properties.inherits);
});

test('[tool.custom] state_dirs: paths inside the home only', () => {
  assert.ok(valid('tool.custom.state_dirs', ['.mytool', '.cache/mytool', '~/.x']));
  for (const bad of ['/etc', '../outside', '.mytool/../../x', '.', '']) assert.ok(!valid('tool.custom.state_dirs', [bad]), bad);
  const r = configSchema().safeParse(patch('tool.custom.state_dirs', ['/etc']));
  assert.match(JSON.stringify(r.error?.issues), /a path inside the home/);
});
