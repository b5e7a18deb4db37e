/**
 * The default agent image `coi`: what it contains and how it is made, as pure
 * data and shell text. builder.ts runs it; nothing here touches the host.
 *
 * Two ways to make it, one content:
 * - offline (no image server, or sandboxes have no way out): the rootfs of the
 *   offline base `coi-base` is unpacked on the host, the packages are installed
 *   in a chroot with the host's access to the Debian mirror, the agents'
 *   native binaries come from the npm registry through the host, and the
 *   result is packed and imported;
 * - online: a temporary container from an image server's base runs
 *   `buildScript` (packages + configuration), then the same agent binaries are
 *   pushed in from the host.
 */
import { createHash } from 'node:crypto';

/** Bumped when the image changes in a way the recipe text does not show. */
const RECIPE_REVISION = 1;

/** Debian packages on top of the base: what agents reach for, without the heavy servers. */
export const AGENT_IMAGE_PACKAGES = [
  // build tools: native npm modules, make-driven projects
  'build-essential', 'pkg-config',
  // Node.js from Debian (signed by the archive); npm comes from the npm registry (NPM_SOURCE)
  'nodejs',
  'python3', 'python3-venv',
  // everyday tools of coding agents
  'git', 'curl', 'wget', 'ca-certificates', 'gnupg', 'openssh-client', 'jq', 'unzip', 'zip', 'xz-utils', 'file',
  'ripgrep', 'fd-find', 'bat', 'fzf', 'tree', 'patch', 'diffutils', 'psmisc', 'strace', 'lsof', 'sqlite3', 'bind9-dnsutils',
  // socat: what agents use to bridge ports; also what the monitor's tests attack with
  'socat',
  'tmux', 'sudo', 'less', 'nano', 'procps',
];

/**
 * What the host fetches from the npm registry for the image: the agents'
 * native binaries, and npm itself (Debian's npm drags in 300-odd node-*
 * packages; the registry's is one self-contained tarball).
 */
export interface AgentSource {
  tool: string;
  /** The package users install (its version is the tool's version). */
  npm: string;
  /** The package whose tarball holds the files: a platform package (linux-x64, glibc) or the package itself. */
  platform: string;
  /** Version spec resolved on the registry when nothing pins it. */
  spec: string;
  install:
    | { kind: 'binary'; member: string }
    /** The package's whole folder, plus symlinks to its programs. */
    | { kind: 'tree'; dir: string; links: [link: string, target: string][] };
  /** The command in the image. */
  target: string;
  /** Arguments that print its version. */
  versionArgs: string[];
}

export const AGENT_SOURCES: Record<string, AgentSource> = {
  claude: {
    tool: 'claude',
    npm: '@anthropic-ai/claude-code',
    platform: '@anthropic-ai/claude-code-linux-x64',
    spec: 'latest',
    install: { kind: 'binary', member: 'package/claude' },
    target: '/usr/local/bin/claude',
    versionArgs: ['--version'],
  },
  opencode: {
    tool: 'opencode',
    npm: 'opencode-ai',
    platform: 'opencode-linux-x64',
    spec: 'latest',
    install: { kind: 'binary', member: 'package/bin/opencode' },
    target: '/usr/local/bin/opencode',
    versionArgs: ['--version'],
  },
};

/** npm for Debian's Node 18: the newest 10.x (npm 11 needs Node 20). Always installed. */
export const NPM_SOURCE: AgentSource = {
  tool: 'npm',
  npm: 'npm',
  platform: 'npm',
  spec: '^10',
  install: {
    kind: 'tree',
    dir: '/usr/local/lib/node_modules/npm',
    links: [
      ['/usr/local/bin/npm', '../lib/node_modules/npm/bin/npm-cli.js'],
      ['/usr/local/bin/npx', '../lib/node_modules/npm/bin/npx-cli.js'],
    ],
  },
  target: '/usr/local/bin/npm',
  versionArgs: ['--version'],
};

/** An agent with concrete versions. */
export interface ResolvedAgent extends AgentSource {
  version: string;
  platformVersion: string;
}

/** npm, then the agents of `[container.build] agents` that can be installed; and those that cannot. */
export function agentSources(names: readonly string[]): { sources: AgentSource[]; unsupported: string[] } {
  const sources: AgentSource[] = [NPM_SOURCE];
  const unsupported: string[] = [];
  for (const n of [...new Set(names)]) {
    const s = AGENT_SOURCES[n];
    if (s) sources.push(s);
    else unsupported.push(n);
  }
  return { sources, unsupported };
}

/**
 * The platform package version the wrapper pins in its optionalDependencies
 * (what `npm install` would fetch), from `npm view PKG@V version optionalDependencies --json`.
 */
export function resolveFromView(source: AgentSource, view: unknown): ResolvedAgent {
  const v = (view ?? {}) as { version?: unknown; optionalDependencies?: Record<string, unknown> };
  const version = typeof v.version === 'string' ? v.version : undefined;
  if (!version || !/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(version)) throw new Error(`npm gave no usable version for ${source.npm}`);
  const pinned = v.optionalDependencies?.[source.platform];
  const platformVersion = typeof pinned === 'string' && /^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(pinned) ? pinned : version;
  return { ...source, version, platformVersion };
}

/** `claude=2.1.3,opencode=1.2.3` (COI_AGENT_VERSIONS) → pins by tool. */
export function parseAgentPins(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z][a-z0-9-]*)=(\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?)$/.exec(part);
    if (!m) throw new Error(`COI_AGENT_VERSIONS: expected tool=version, not "${part}"`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/**
 * Shell that installs a tool from its package tarball (already copied into the
 * image at `tarball`), as root, without network; the same offline (chroot)
 * and online (temporary container).
 */
export function installScript(a: Pick<AgentSource, 'tool' | 'install' | 'target'>, tarball: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const tmp = `/tmp/coi-install-${a.tool}`;
  const lines = ['set -eu', `rm -rf ${tmp}`, `mkdir -p ${tmp}`];
  if (a.install.kind === 'binary') {
    lines.push(`tar --no-same-owner -xzf ${q(tarball)} -C ${tmp} ${q(a.install.member)}`, `install -D -m 0755 -o root -g root ${tmp}/${a.install.member} ${q(a.target)}`);
  } else {
    lines.push(
      `tar --no-same-owner -xzf ${q(tarball)} -C ${tmp}`,
      `rm -rf ${q(a.install.dir)}`,
      `mkdir -p "$(dirname ${q(a.install.dir)})"`,
      `mv ${tmp}/package ${q(a.install.dir)}`,
      `chown -R root:root ${q(a.install.dir)}`,
      ...a.install.links.map(([link, target]) => `ln -sfn ${q(target)} ${q(link)}`),
    );
  }
  lines.push(`rm -rf ${tmp} ${q(tarball)}`, `test -x ${q(a.target)}`);
  return lines.join('\n') + '\n';
}

/** A cache file name for a platform package tarball. */
export function agentTarballName(a: Pick<ResolvedAgent, 'platform' | 'platformVersion'>): string {
  return `${a.platform.replace(/^@/, '').replace(/\//g, '-')}-${a.platformVersion}.tgz`;
}

export interface AgentImageRecipe {
  alias: string;
  base: { alias: string; fingerprint: string };
  packages: string[];
  /** Run in the rootfs with network (apt). */
  packagesScript: string;
  /** Run in the rootfs without network, after the agents are in place. */
  configureScript: string;
  agents: ResolvedAgent[];
  /** Everything but the agents' versions: a rebuild is needed when this changes. */
  layerHash: string;
  /** The cache key: layer + agent versions. */
  hash: string;
}

export function agentImageRecipe(input: { alias: string; base: { alias: string; fingerprint: string }; agents: ResolvedAgent[]; packages?: string[] }): AgentImageRecipe {
  const packages = [...(input.packages ?? AGENT_IMAGE_PACKAGES)];
  const packagesScript = aptScript(packages);
  const configureScript = configureImageScript(input.agents);
  const layerHash = sha16({ RECIPE_REVISION, base: input.base.fingerprint, packages, packagesScript, configureScript: configureImageScript([]), agents: input.agents.map((a) => a.tool).sort() });
  const hash = sha16({ layerHash, agents: input.agents.map((a) => [a.tool, a.version, a.platform, a.platformVersion]).sort() });
  return { alias: input.alias, base: input.base, packages, packagesScript, configureScript, agents: input.agents, layerHash, hash };
}

function sha16(x: unknown): string {
  return createHash('sha256').update(JSON.stringify(x)).digest('hex').slice(0, 16);
}

/** apt in the rootfs: the mirror comes in through the sources list the builder writes. */
export function aptScript(packages: string[]): string {
  return `set -eu
export DEBIAN_FRONTEND=noninteractive
echo "==> apt-get update"
apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600 update
echo "==> apt-get upgrade (security and stable updates)"
apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold upgrade -y
echo "==> apt-get install ${packages.length} packages"
apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ${packages.join(' ')}
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
`;
}

/**
 * The sources apt uses while the image is built: the release, its updates and
 * its security updates. COI_APT_MIRROR and COI_APT_SECURITY_MIRROR choose the
 * mirrors; else the host's own (known to work from here); else Debian's.
 */
export function buildAptSources(mirror: string, env: NodeJS.ProcessEnv, hostSources: string[], suite = 'bookworm'): string {
  let security = env.COI_APT_SECURITY_MIRROR;
  if (!security) {
    for (const text of hostSources) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
        const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
        if (uri && suites.includes(`${suite}-security`)) security ??= uri;
      }
      for (const line of text.split('\n')) {
        const m = new RegExp(`^deb\\s+(?:\\[[^\\]]*\\]\\s+)?(\\S+)\\s+${suite}-security\\s`).exec(line.trim());
        if (m) security ??= m[1];
      }
    }
  }
  security ??= 'http://deb.debian.org/debian-security';
  return [`deb ${mirror} ${suite} main`, `deb ${mirror} ${suite}-updates main`, `deb ${security} ${suite}-security main`, ''].join('\n');
}

/**
 * Idempotent configuration of the image, as root, needing no network: the
 * `code` user, sudo, tmux, power-command wrappers, tool name fixes. Run a
 * second time it changes nothing.
 */
export function configureImageScript(agents: Pick<ResolvedAgent, 'tool' | 'target'>[]): string {
  const chmods = agents.map((a) => `test -x ${a.target}`).join('\n');
  return `set -eu
echo "==> user code (uid 1000, passwordless sudo)"
if ! id -u code >/dev/null 2>&1; then
  other=$(getent passwd 1000 | cut -d: -f1 || true)
  if [ -n "$other" ]; then
    # Cloud images ship an "ubuntu" or "debian" user with uid 1000: rename it.
    usermod -l code -d /home/code -m "$other"
    grp=$(getent group 1000 | cut -d: -f1 || true)
    [ -n "$grp" ] && [ "$grp" != code ] && groupmod -n code "$grp"
  else
    getent group 1000 >/dev/null || groupadd -g 1000 code
    useradd -m -u 1000 -g 1000 -s /bin/bash code
  fi
fi
echo 'code ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/coi-code
chmod 0440 /etc/sudoers.d/coi-code
echo "==> /etc/tmux.conf"
cat > /etc/tmux.conf <<'TMUX'
set -g history-limit 50000
set -sg escape-time 10
set -g default-terminal "tmux-256color"
set -g mouse on
TMUX
echo "==> power commands end the session"
for cmd in poweroff shutdown halt reboot; do
  cat > /usr/local/bin/$cmd <<'WRAP'
#!/bin/sh
# COI: in a sandbox, powering off (or rebooting) ends the session; the container stops.
exec sudo -n /usr/bin/systemctl poweroff
WRAP
  chmod 0755 /usr/local/bin/$cmd
done
echo "==> tool names"
[ -x /usr/bin/fdfind ] && ln -sf /usr/bin/fdfind /usr/local/bin/fd
[ -x /usr/bin/batcat ] && ln -sf /usr/bin/batcat /usr/local/bin/bat
${chmods ? `echo "==> agents"\n${chmods}\n` : ''}mkdir -p /etc/coi /home/code/.local/bin
# Claude Code's first-run wizard (theme, then a connectivity check that exits
# when Anthropic is out of reach) has no place in a headless sandbox: mark it
# done. Everything else in ~/.claude.json is the launch's to manage.
if [ -x /usr/local/bin/claude ] && [ ! -e /home/code/.claude.json ]; then
  printf '{\\n  "hasCompletedOnboarding": true,\\n  "theme": "dark"\\n}\\n' > /home/code/.claude.json
fi
chown -R 1000:1000 /home/code
echo "==> clean up"
rm -rf /tmp/* /var/tmp/* /root/.cache /root/.npm
: > /etc/machine-id
`;
}

/** Prints one "name<TAB>version" line per tool found; run as `code`, without network. */
export function probeScript(agents: Pick<ResolvedAgent, 'tool' | 'target' | 'versionArgs'>[]): string {
  const lines = [
    'set +e',
    'export HOME=$(mktemp -d)',
    // Only what a tool prints on stdout counts: a missing tool's "command not found" is not its version.
    'v() { n=$1; shift; out=$("$@" 2>/dev/null | head -n1); [ -n "$out" ] && printf "%s\\t%s\\n" "$n" "$out"; }',
    'v node node --version',
    'v npm npm --version',
    'v git git --version',
    'v tmux tmux -V',
    'v sudo sh -c "sudo -V 2>/dev/null | head -n1"',
    'v python3 python3 --version',
    'v gcc sh -c "gcc --version | head -n1"',
    'v curl sh -c "curl --version | head -n1"',
    ...agents.filter((a) => a.tool !== 'npm').map((a) => `v ${a.tool} ${a.target} ${a.versionArgs.join(' ')}`),
    'rm -rf "$HOME"',
    'exit 0',
  ];
  return lines.join('\n') + '\n';
}

/** Tool versions from the probe's output; only tools that answered. */
export function parseProbe(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('\t');
    if (i <= 0) continue;
    const name = line.slice(0, i);
    if (!/^[a-z0-9-]+$/.test(name)) continue;
    out[name] = cleanVersion(line.slice(i + 1).trim());
  }
  return out;
}

/** "git version 2.39.5" → "2.39.5"; "2.1.3 (Claude Code)" → "2.1.3"; else the line as is. */
export function cleanVersion(s: string): string {
  const m = /v?(\d+\.\d+(?:\.\d+)?[a-z0-9]*(?:[-+~][0-9A-Za-z.+~-]+)?)/.exec(s);
  return (m ? m[1]! : s).slice(0, 80);
}

export interface ImageManifest {
  name: string;
  kind: 'default' | 'custom';
  builtAt: string;
  buildId: string;
  recipe?: string;
  base: string;
  packages?: string[];
  agents?: Record<string, { npm: string; version: string }>;
  tools: Record<string, string>;
  script?: { sha256: string; file?: string };
}

/** Image properties (flat strings) from the manifest: what `coi image info` shows. */
export function manifestProperties(m: ImageManifest): Record<string, string> {
  const p: Record<string, string> = {
    'coi.kind': m.kind,
    'coi.name': m.name,
    'coi.built-at': m.builtAt,
    'coi.build-id': m.buildId,
    'coi.base': m.base,
  };
  if (m.recipe) p['coi.recipe'] = m.recipe;
  for (const [tool, v] of Object.entries(m.tools)) p[`coi.tools.${tool}`] = v;
  for (const [tool, a] of Object.entries(m.agents ?? {})) p[`coi.agents.${tool}`] = `${a.npm}@${a.version}`;
  if (m.script) p['coi.script.sha256'] = m.script.sha256;
  return p;
}

/** metadata.yaml of the unified tarball; values are quoted so any version string is valid YAML. */
export function agentImageMetadata(m: ImageManifest, createdAt: Date, description: string, extra: Record<string, string> = {}): string {
  const props: Record<string, string> = {
    os: 'debian',
    release: 'bookworm',
    variant: m.name,
    description,
    ...manifestProperties(m),
    ...extra,
  };
  return [
    'architecture: x86_64',
    `creation_date: ${Math.floor(createdAt.getTime() / 1000)}`,
    'properties:',
    ...Object.entries(props).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
    '',
  ].join('\n');
}

/**
 * The online build script, run as root in a temporary container from an
 * image server's base: packages (with the container's own network), then the
 * same configuration as offline. The agents are pushed in from the host after.
 */
export function onlineBuildScript(recipe: Pick<AgentImageRecipe, 'packagesScript' | 'configureScript'>): string {
  return `#!/bin/bash
# COI image build (online): idempotent; each step announces itself with "==> ".
set -euo pipefail
echo "==> waiting for the network"
for i in $(seq 1 30); do getent hosts deb.debian.org >/dev/null 2>&1 || getent hosts archive.ubuntu.com >/dev/null 2>&1 && break; sleep 2; done
(
${recipe.packagesScript}
)
(
${recipe.configureScript}
)
`;
}

/** Image server remotes known by name, as `incus remote list` has them by default. */
export const IMAGE_SERVERS: Record<string, { server: string; protocol: 'simplestreams' }> = {
  images: { server: 'https://images.linuxcontainers.org', protocol: 'simplestreams' },
  ubuntu: { server: 'https://cloud-images.ubuntu.com/releases', protocol: 'simplestreams' },
  'ubuntu-daily': { server: 'https://cloud-images.ubuntu.com/daily', protocol: 'simplestreams' },
};

export type BaseRef = { kind: 'remote'; remote: string; server: string; protocol: 'simplestreams'; alias: string } | { kind: 'local'; alias: string };

/** `images:ubuntu/24.04` → a remote base; `coi-base`, `coi` → a local image. */
export function parseBase(base: string): BaseRef {
  const m = /^([a-z][a-z0-9-]*):(.+)$/.exec(base.trim());
  if (m) {
    const s = IMAGE_SERVERS[m[1]!];
    if (!s) throw new Error(`unknown image server "${m[1]}" in "${base}"; known: ${Object.keys(IMAGE_SERVERS).join(', ')}`);
    return { kind: 'remote', remote: m[1]!, server: s.server, protocol: s.protocol, alias: m[2]! };
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(base.trim())) throw new Error(`"${base}" is not an image alias`);
  return { kind: 'local', alias: base.trim() };
}

export type BuildMode = 'offline' | 'online';

/**
 * Offline unless the base is on an image server and a container on the
 * sandbox bridge could reach the package mirrors (the bridge does NAT). This
 * is decided from local facts only: no probe leaves the machine.
 */
export function chooseMode(opts: { base: BaseRef; requested?: BuildMode; bridgeNat: boolean; envOffline?: boolean }): { mode: BuildMode; why: string } {
  if (opts.requested) return { mode: opts.requested, why: `--${opts.requested}` };
  if (opts.envOffline) return { mode: 'offline', why: 'COI_OFFLINE is set' };
  if (opts.base.kind === 'local') return { mode: 'offline', why: `the base ${opts.base.alias} is a local image` };
  if (!opts.bridgeNat) return { mode: 'offline', why: 'the sandbox bridge has no NAT (dead-end or air-gapped network): a build container could not reach package mirrors' };
  return { mode: 'online', why: `the base ${opts.base.remote}:${opts.base.alias} is on an image server and the bridge has NAT` };
}
