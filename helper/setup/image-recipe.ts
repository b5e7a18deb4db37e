/**
 * The offline base image: Debian from its packages with debootstrap, for hosts
 * that reach no image server (air-gapped machines, CI here). Pure: the recipe,
 * its cache key and the files it writes; setup.ts runs it.
 */
import { createHash } from 'node:crypto';

export interface BaseImageRecipe {
  suite: string;
  mirror: string;
  packages: string[];
  /** Shell run inside the chroot after debootstrap. */
  customise: string;
  /** Cache key: changes whenever anything above changes. */
  hash: string;
}

/** Bumped when the image's content changes in a way the recipe text does not show. */
const RECIPE_REVISION = 1;

export const BASE_PACKAGES = [
  'systemd-sysv', 'bash', 'sudo', 'tmux', 'ca-certificates', 'iproute2', 'procps',
  'udhcpc', 'less', 'git', 'curl', 'nano', 'locales', 'tzdata', 'netbase',
];

export function baseImageRecipe(mirror: string, suite = 'bookworm'): BaseImageRecipe {
  const customise = customiseScript();
  const hash = createHash('sha256')
    .update(JSON.stringify({ RECIPE_REVISION, suite, packages: BASE_PACKAGES, customise }))
    .digest('hex')
    .slice(0, 16);
  return { suite, mirror, packages: BASE_PACKAGES, customise, hash };
}

function customiseScript(): string {
  return `set -eu
export DEBIAN_FRONTEND=noninteractive
# The agent's user: uid 1000 like the host's first user, passwordless sudo (the container is the boundary).
if ! id -u code >/dev/null 2>&1; then
  groupadd -g 1000 code
  useradd -m -u 1000 -g 1000 -s /bin/bash code
fi
echo 'code ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/coi-code
chmod 0440 /etc/sudoers.d/coi-code
passwd -l root >/dev/null
# tmux defaults: long history, no Escape delay (nested tmux in the editor's terminal).
cat > /etc/tmux.conf <<'TMUX'
set -g history-limit 50000
set -sg escape-time 10
set -g default-terminal "tmux-256color"
TMUX
# No udev in a container, so systemd-networkd never configures eth0: a tiny DHCP client does.
cat > /etc/systemd/system/coi-dhcp.service <<'UNIT'
[Unit]
Description=DHCP on eth0 (systemd-networkd waits for udev, which containers lack)
After=network-pre.target
Before=network.target
[Service]
ExecStart=/sbin/udhcpc -f -S -i eth0 -t 20 -T 1
Restart=always
RestartSec=1
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable coi-dhcp.service >/dev/null 2>&1
systemctl disable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true
# Units that mean nothing in a container (modules, filesystem scrubs and remounts,
# kernel pseudo-filesystems) only slow every boot; the journal stays in memory.
systemctl mask e2scrub_reap.service systemd-modules-load.service modprobe@.service systemd-remount-fs.service \
  systemd-journal-flush.service sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  dev-hugepages.mount >/dev/null 2>&1 || true
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > /etc/systemd/journald.conf.d/coi.conf
sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && locale-gen >/dev/null 2>&1 || true
# No /etc/hostname: each container then carries its own name (coi-<hash>-<slot>).
rm -f /etc/hostname
: > /etc/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/tmp/*
`;
}

/** metadata.yaml of the unified image tarball Incus imports. */
export function imageMetadata(recipe: BaseImageRecipe, createdAt: Date): string {
  return [
    'architecture: x86_64',
    `creation_date: ${Math.floor(createdAt.getTime() / 1000)}`,
    'properties:',
    '  os: debian',
    `  release: ${recipe.suite}`,
    '  variant: coi-base',
    `  description: COI base (Debian ${recipe.suite}, offline build ${recipe.hash})`,
    `  coi.recipe: "${recipe.hash}"`,
    '',
  ].join('\n');
}

/**
 * The Debian mirror for debootstrap: COI_APT_MIRROR, else the host's own apt
 * source (it is known to work from here), else deb.debian.org.
 */
export function aptMirror(env: NodeJS.ProcessEnv, sources: string[]): string {
  if (env.COI_APT_MIRROR) return env.COI_APT_MIRROR;
  for (const text of sources) {
    // deb822: "URIs: http://…" in a stanza whose Suites include a plain release.
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.split(/\s+/) ?? [];
      if (uri && /\/debian\/?$/.test(uri) && suites.includes('bookworm')) return uri;
    }
    // one-line format: "deb [opts] http://… bookworm main"
    for (const line of text.split('\n')) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/.exec(line.trim());
      if (m && /\/debian\/?$/.test(m[1]!)) return m[1]!;
    }
  }
  return 'http://deb.debian.org/debian';
}
