import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { chrootArgv, compareVersions, resolveAgent, tarballExt, tarCreateArgv, tiedArgv } from '../../../helper/images/host';
import {
  AGENT_IMAGE_PACKAGES,
  AGENT_SOURCES,
  agentImageMetadata,
  agentImageRecipe,
  agentSources,
  agentTarballName,
  buildAptSources,
  chooseMode,
  cleanVersion,
  configureImageScript,
  installScript,
  manifestProperties,
  NPM_SOURCE,
  onlineBuildScript,
  parseAgentPins,
  parseBase,
  parseProbe,
  probeScript,
  ResolvedAgent,
  resolveFromView,
} from '../../../helper/images/recipe';

const claude = (v: string): ResolvedAgent => ({ ...AGENT_SOURCES.claude!, version: v, platformVersion: v });
const opencode = (v: string): ResolvedAgent => ({ ...AGENT_SOURCES.opencode!, version: v, platformVersion: v });
const base = { alias: 'coi-base', fingerprint: 'a'.repeat(64) };

test('the recipe hash changes with agent versions; the layer hash only with what is built around them', () => {
  const a = agentImageRecipe({ alias: 'coi', base, agents: [claude('2.1.0'), opencode('1.0.0')] });
  const b = agentImageRecipe({ alias: 'coi', base, agents: [claude('2.1.1'), opencode('1.0.0')] });
  assert.equal(a.hash, agentImageRecipe({ alias: 'coi', base, agents: [opencode('1.0.0'), claude('2.1.0')] }).hash, 'order of agents does not matter');
  assert.notEqual(a.hash, b.hash);
  assert.equal(a.layerHash, b.layerHash);
  const otherBase = agentImageRecipe({ alias: 'coi', base: { ...base, fingerprint: 'b'.repeat(64) }, agents: [claude('2.1.0'), opencode('1.0.0')] });
  assert.notEqual(a.layerHash, otherBase.layerHash, 'a new base image means a new build');
  const fewer = agentImageRecipe({ alias: 'coi', base, agents: [claude('2.1.0')] });
  assert.notEqual(a.layerHash, fewer.layerHash, 'the set of agents is part of the layer');
  assert.match(a.hash, /^[0-9a-f]{16}$/);
});

test('the image holds what agents need: tmux, git, sudo, node, build tools', () => {
  for (const p of ['tmux', 'git', 'sudo', 'nodejs', 'build-essential', 'curl', 'ca-certificates', 'ripgrep']) assert.ok(AGENT_IMAGE_PACKAGES.includes(p), p);
  const r = agentImageRecipe({ alias: 'coi', base, agents: [] });
  assert.match(r.packagesScript, /apt-get .*install -y --no-install-recommends .*build-essential/);
  assert.match(r.packagesScript, /rm -rf \/var\/lib\/apt\/lists/);
});

test('configuration: user code uid 1000 with passwordless sudo, tmux.conf, power-command wrappers, idempotent', () => {
  const s = configureImageScript([claude('1.0.0')]);
  assert.match(s, /useradd -m -u 1000 -g 1000 -s \/bin\/bash code/);
  assert.match(s, /if ! id -u code/, 'only creates the user when missing');
  assert.match(s, /usermod -l code/, 'renames a cloud image\'s uid-1000 user');
  assert.match(s, /code ALL=\(ALL\) NOPASSWD:ALL/);
  assert.match(s, /cat > \/etc\/tmux.conf/);
  assert.match(s, /for cmd in poweroff shutdown halt reboot/);
  assert.match(s, /exec sudo -n \/usr\/bin\/systemctl poweroff/);
  assert.match(s, /test -x \/usr\/local\/bin\/claude/);
  assert.ok(!/apt-get/.test(s), 'configuration needs no network');
  assert.match(s, /"hasCompletedOnboarding": true/, 'Claude Code\'s first-run wizard is marked done');
  assert.match(s, /\[ ! -e \/home\/code\/.claude.json \]/, 'never over an existing ~\/.claude.json');
});

test('the online script runs the same packages and configuration after waiting for the network', () => {
  const r = agentImageRecipe({ alias: 'coi', base, agents: [claude('1.0.0')] });
  const s = onlineBuildScript(r);
  assert.ok(s.indexOf('waiting for the network') < s.indexOf('apt-get'));
  assert.ok(s.includes(r.packagesScript) && s.includes(r.configureScript));
});

test('agents: the wrapper package pins its linux-x64 platform package; unknown agents are reported', () => {
  const a = resolveFromView(AGENT_SOURCES.claude!, { version: '2.1.332', optionalDependencies: { '@anthropic-ai/claude-code-linux-x64': '2.1.332', '@anthropic-ai/claude-code-darwin-arm64': '2.1.332' } });
  assert.equal(a.version, '2.1.332');
  assert.equal(a.platform, '@anthropic-ai/claude-code-linux-x64');
  assert.equal(a.platformVersion, '2.1.332');
  assert.equal(resolveFromView(AGENT_SOURCES.opencode!, { version: '1.2.3' }).platformVersion, '1.2.3', 'no pin: the same version');
  assert.throws(() => resolveFromView(AGENT_SOURCES.opencode!, { version: 'latest; rm -rf /' }), /no usable version/);
  assert.deepEqual(agentSources(['claude', 'aider', 'claude']), { sources: [NPM_SOURCE, AGENT_SOURCES.claude], unsupported: ['aider'] }, 'npm always, from the registry');
  assert.equal(agentTarballName(a), 'anthropic-ai-claude-code-linux-x64-2.1.332.tgz');
});

test('install scripts: a native binary to its place, or a whole package folder with links (npm)', () => {
  const bin = installScript(AGENT_SOURCES.opencode!, '/tmp/opencode-linux-x64-1.0.0.tgz');
  assert.match(bin, /tar --no-same-owner -xzf '\/tmp\/opencode-linux-x64-1.0.0.tgz' -C \/tmp\/coi-install-opencode 'package\/bin\/opencode'/);
  assert.match(bin, /install -D -m 0755 -o root -g root \/tmp\/coi-install-opencode\/package\/bin\/opencode '\/usr\/local\/bin\/opencode'/);
  assert.match(bin, /test -x '\/usr\/local\/bin\/opencode'\n$/);
  const tree = installScript(NPM_SOURCE, '/tmp/npm-10.9.0.tgz');
  assert.match(tree, /mv \/tmp\/coi-install-npm\/package '\/usr\/local\/lib\/node_modules\/npm'/);
  assert.match(tree, /ln -sfn '..\/lib\/node_modules\/npm\/bin\/npx-cli.js' '\/usr\/local\/bin\/npx'/);
  assert.equal(NPM_SOURCE.spec, '^10', 'npm 11 needs a newer Node than Debian 12 has');
});

test('COI_AGENT_VERSIONS pins versions and refuses anything that is not tool=version', () => {
  assert.deepEqual(parseAgentPins('claude=2.1.3, opencode=1.0.0-beta.1'), { claude: '2.1.3', opencode: '1.0.0-beta.1' });
  assert.deepEqual(parseAgentPins(undefined), {});
  assert.throws(() => parseAgentPins('claude=latest'), /expected tool=version/);
  assert.throws(() => parseAgentPins('claude=1.0.0;touch x'), /expected tool=version/);
});

test('probe output becomes tool versions', () => {
  const tools = parseProbe('node\tv18.20.4\ngit\tgit version 2.39.5\ntmux\ttmux 3.3a\nclaude\t2.1.332 (Claude Code)\nopencode\t1.18.33\nbad line\n\tnothing\n');
  assert.deepEqual(tools, { node: '18.20.4', git: '2.39.5', tmux: '3.3a', claude: '2.1.332', opencode: '1.18.33' });
  assert.equal(cleanVersion('sudo Sudo version 1.9.13p3'), '1.9.13p3');
  const s = probeScript([claude('1')]);
  assert.match(s, /v claude \/usr\/local\/bin\/claude --version/);
  assert.match(s, /export HOME=\$\(mktemp -d\)/, 'agents write their state into a throw-away home');
});

test('manifest properties and metadata.yaml carry tools, agents and the recipe, quoted', () => {
  const m = { name: 'coi', kind: 'default' as const, builtAt: '2026-01-02T03:04:05.000Z', buildId: 'b1', recipe: 'r1', base: 'coi-base@abc', agents: { claude: { npm: '@anthropic-ai/claude-code', version: '2.1.3' } }, tools: { claude: '2.1.3', node: '18.20.4' } };
  const p = manifestProperties(m);
  assert.equal(p['coi.tools.claude'], '2.1.3');
  assert.equal(p['coi.agents.claude'], '@anthropic-ai/claude-code@2.1.3');
  assert.equal(p['coi.recipe'], 'r1');
  assert.equal(p['coi.kind'], 'default');
  const md = agentImageMetadata(m, new Date(1_000_000_000_000), 'COI "agent" image', { 'coi.layer': 'L' });
  assert.match(md, /^architecture: x86_64$/m);
  assert.match(md, /^creation_date: 1000000000$/m);
  assert.match(md, /^ {2}description: "COI \\"agent\\" image"$/m);
  assert.match(md, /^ {2}coi.tools.node: "18.20.4"$/m);
  assert.match(md, /^ {2}coi.layer: "L"$/m);
});

test('bases: image server aliases and local images', () => {
  assert.deepEqual(parseBase('images:ubuntu/24.04'), { kind: 'remote', remote: 'images', server: 'https://images.linuxcontainers.org', protocol: 'simplestreams', alias: 'ubuntu/24.04' });
  assert.deepEqual(parseBase('coi-base'), { kind: 'local', alias: 'coi-base' });
  assert.throws(() => parseBase('evil:x'), /unknown image server "evil"/);
  assert.throws(() => parseBase('a b'), /not an image alias/);
});

test('mode: offline unless an image server base and a bridge with NAT; decided without any probe', () => {
  const remote = parseBase('images:ubuntu/24.04');
  assert.equal(chooseMode({ base: remote, bridgeNat: true }).mode, 'online');
  assert.equal(chooseMode({ base: remote, bridgeNat: false }).mode, 'offline');
  assert.match(chooseMode({ base: remote, bridgeNat: false }).why, /no NAT/);
  assert.equal(chooseMode({ base: remote, bridgeNat: true, envOffline: true }).mode, 'offline');
  assert.equal(chooseMode({ base: parseBase('coi-base'), bridgeNat: true }).mode, 'offline');
  assert.equal(chooseMode({ base: remote, bridgeNat: false, requested: 'online' }).mode, 'online');
});

test('host commands die with coi, run in their own pid and mount namespaces, and without network unless apt needs it', () => {
  assert.deepEqual(tiedArgv(['tar', 'x']), ['setpriv', '--pdeathsig', 'KILL', 'tar', 'x']);
  const off = chrootArgv('/c/rootfs', ['/bin/bash', '-c', 'x'], { network: false, user: 1000 });
  assert.deepEqual(off.slice(0, 9), ['setpriv', '--pdeathsig', 'KILL', 'unshare', '--mount', '--pid', '--fork', '--kill-child=SIGKILL', '--mount-proc=/c/rootfs/proc']);
  assert.ok(off.includes('--net'));
  assert.ok(off.includes('--userspec=1000:1000'));
  assert.ok(off.includes('HOME=/home/code'));
  assert.deepEqual(off.slice(-3), ['/bin/bash', '-c', 'x']);
  const on = chrootArgv('/c/rootfs', ['true'], { network: true });
  assert.ok(!on.includes('--net'));
  assert.ok(on.includes('HOME=/root'));
  assert.ok(on.includes('-i'), 'the host environment stays out');
  assert.deepEqual(tarCreateArgv('/w', ['metadata.yaml', 'rootfs'], '/w/i.tar.gz', 'gzip').slice(3), ['tar', '--numeric-owner', '--xattrs', '--xattrs-include=security.capability', '-z', '-C', '/w', '-cf', '/w/i.tar.gz', 'metadata.yaml', 'rootfs']);
  assert.equal(tarballExt('none'), '.tar');
  assert.equal(tarballExt('xz'), '.tar.xz');
});

test('a version range resolves to its newest version, asked again for its exact metadata', async () => {
  assert.ok(compareVersions('10.10.0', '10.9.3') > 0);
  assert.ok(compareVersions('1.0.0-beta.1', '1.0.0') < 0);
  assert.equal(compareVersions('2.0.0', '2.0.0'), 0);
  const asked: string[] = [];
  const npm = async (args: string[]) => {
    asked.push(args[1]!);
    return args[1] === 'npm@^10' ? JSON.stringify(['10.0.0', '10.9.3', '10.10.0', '10.2.0']) : JSON.stringify({ version: '10.10.0' });
  };
  const a = await resolveAgent(npm, NPM_SOURCE, '^10');
  assert.equal(a.version, '10.10.0');
  assert.deepEqual(asked, ['npm@^10', 'npm@10.10.0']);
});

test("apt sources of the build: release, updates and security, from the host's mirrors or the environment", () => {
  const host = 'Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n';
  assert.equal(buildAptSources('http://m/debian', {}, [host]), 'deb http://m/debian bookworm main\ndeb http://m/debian bookworm-updates main\ndeb http://sec.example/debian-security bookworm-security main\n');
  assert.match(buildAptSources('http://m/debian', {}, ['deb [arch=amd64] http://old/security bookworm-security main\n']), /deb http:\/\/old\/security bookworm-security main/);
  assert.match(buildAptSources('http://m/debian', { COI_APT_SECURITY_MIRROR: 'http://s/' }, [host]), /deb http:\/\/s\/ bookworm-security main/);
  assert.match(buildAptSources('http://m/debian', {}, []), /deb http:\/\/deb.debian.org\/debian-security bookworm-security main/);
  assert.match(agentImageRecipe({ alias: 'coi', base, agents: [] }).packagesScript, /upgrade -y/, 'security updates are applied');
});
