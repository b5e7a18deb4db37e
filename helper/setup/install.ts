/**
 * How to install Incus on this host, from /etc/os-release. Pure; setup.ts runs it.
 * Debian 12 has Incus only in bookworm-backports; Ubuntu 24.04+ in universe.
 */
export interface OsRelease {
  id: string;
  versionId: string;
  codename: string;
}

export function parseOsRelease(text: string): OsRelease {
  const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(text)?.[1] ?? '';
  return { id: get('ID'), versionId: get('VERSION_ID'), codename: get('VERSION_CODENAME') };
}

export const HOST_PACKAGES = ['btrfs-progs', 'nftables', 'debootstrap', 'tmux', 'iproute2'];

export interface InstallPlan {
  /** deb822 source to write, when one is needed. */
  source?: { path: string; content: string };
  /** apt-get argument lists, in order. */
  apt: string[][];
}

export function incusInstallPlan(os: OsRelease, mirror: string): InstallPlan {
  const aptOpts = ['-y', '-o', 'DPkg::Lock::Timeout=600', '--no-install-recommends'];
  if (os.id === 'debian' && os.codename === 'bookworm') {
    return {
      source: {
        path: '/etc/apt/sources.list.d/bookworm-backports.sources',
        content: `Types: deb\nURIs: ${mirror}\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
      },
      apt: [['update', '-o', 'DPkg::Lock::Timeout=600'], ['install', ...aptOpts, '-t', 'bookworm-backports', 'incus-base', 'dnsmasq-base'], ['install', ...aptOpts, ...HOST_PACKAGES]],
    };
  }
  if (os.id === 'debian' || os.id === 'ubuntu') {
    return { apt: [['update', '-o', 'DPkg::Lock::Timeout=600'], ['install', ...aptOpts, 'incus-base', 'dnsmasq-base', ...HOST_PACKAGES]] };
  }
  throw new Error(`automatic Incus installation supports Debian and Ubuntu, not ${os.id || 'this system'} ${os.versionId}; install Incus yourself (https://linuxcontainers.org/incus/docs/main/installing/), then run coi setup again`);
}
