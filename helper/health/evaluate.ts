/**
 * From facts to verdicts: pure. Each check says what it found and, when it
 * is not ok, how to fix it (and whether `--fix` can). Thresholds follow the
 * Go coi (reference §9) where it has them.
 */
import { NETWORK_LABEL } from '../sandbox/network-label';
import { SETUP_NAMES } from '../setup/names';
import type { HealthFacts, PoolFact, ProbeOutcome } from './facts';
import { CheckStatus, HealthCheck, HealthReport } from './schema';

const GiB = 1024 ** 3;
export const THRESHOLDS = {
  kernelMin: [5, 15] as const,
  incusMin: [6, 0] as const,
  poolWarnFreeBytes: 5 * GiB,
  poolFailFreeBytes: 2 * GiB,
  poolWarnUsedPct: 80,
  poolFailUsedPct: 90,
  imageMaxAgeDays: 30,
};

/** Keys whose presence in a profile or instance loosens confinement. */
export const RAW_OVERRIDES = ['raw.lxc', 'raw.seccomp', 'raw.apparmor'];

type Check = HealthCheck;
const SETUP = { title: 'Set up this machine', shell: 'sudo coi setup', command: 'coi.setup' };

function ok(name: string, message: string, details: Record<string, unknown> = {}): Check {
  return { name, status: 'ok', message, details };
}
function bad(status: Exclude<CheckStatus, 'ok'>, name: string, message: string, remedy: Check['remedy'], details: Record<string, unknown> = {}, fixable = false): Check {
  return { name, status, message, details, remedy: remedy!, ...(fixable ? { fixable: true } : {}) };
}

/** "6.18.44-fc-v782" → [6, 18, 44]. */
export function parseVersion(v: string): number[] {
  const m = /^(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)] : [];
}

export function versionAtLeast(v: number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    const a = v[i] ?? 0;
    if (a !== min[i]) return a > min[i]!;
  }
  return true;
}

export function checkKernel(f: HealthFacts): Check {
  const v = parseVersion(f.kernelRelease);
  const name = 'Kernel version';
  if (v.length === 0) return bad('warning', name, `cannot read the kernel version from "${f.kernelRelease}"`, { title: 'Check the kernel', shell: 'uname -r' });
  if (!versionAtLeast(v, THRESHOLDS.kernelMin)) {
    return bad('warning', name, `Linux ${f.kernelRelease} is older than ${THRESHOLDS.kernelMin.join('.')}: idmapped mounts and the netdev hooks the guard relies on may be missing`, { title: 'Boot a newer kernel (5.15 or later)' }, { release: f.kernelRelease });
  }
  return ok(name, `Linux ${f.kernelRelease}`, { release: f.kernelRelease });
}

export function checkIncus(f: HealthFacts): Check {
  const name = 'Incus';
  if (!f.incus.reachable) {
    const remedy = f.incus.code === 'INCUS_PERMISSION' ? { title: `Join ${f.access.group}, then log in again`, shell: `sudo usermod -aG ${f.access.group} ${f.user.name}` } : SETUP;
    return bad('failed', name, `Incus cannot be reached at ${f.incus.endpoint}: ${f.incus.error}`, remedy, { endpoint: f.incus.endpoint });
  }
  const v = parseVersion(f.incus.serverVersion);
  const details = { serverVersion: f.incus.serverVersion, apiVersion: f.incus.apiVersion, endpoint: f.incus.endpoint, ...(f.incus.firewall ? { firewall: f.incus.firewall } : {}) };
  if (!versionAtLeast(v, THRESHOLDS.incusMin)) {
    return bad('failed', name, `Incus ${f.incus.serverVersion} is older than ${THRESHOLDS.incusMin.join('.')}, the oldest COI supports`, { title: 'Install Incus 6.0 LTS or later', shell: 'sudo coi setup' }, details);
  }
  return ok(name, `Incus ${f.incus.serverVersion} at ${f.incus.endpoint}`, details);
}

export function checkPermissions(f: HealthFacts): Check {
  const name = 'Access to the Incus socket';
  const details = { socket: f.socket.path, group: f.access.group, user: f.user.name, ...(f.socket.mode !== undefined ? { mode: f.socket.mode.toString(8) } : {}) };
  if (!f.socket.exists) return bad('failed', name, `the Incus socket ${f.socket.path} does not exist`, SETUP, details);
  if (f.user.root) return ok(name, `running as root: full access to ${f.socket.path}`, details);
  const join = { title: `Add ${f.user.name} to ${f.access.group}, then log in again`, shell: `sudo usermod -aG ${f.access.group} ${f.user.name}` };
  if (!f.access.groupExists) return bad('failed', name, `the group ${f.access.group} does not exist, so only root may use Incus`, SETUP, details);
  if (f.incus.reachable === false && f.incus.code === 'INCUS_PERMISSION') {
    return bad('failed', name, `${f.user.name} may not open ${f.socket.path}${f.access.inGroupFile ? ` (a member of ${f.access.group}, but not in this login session)` : ''}`, f.access.inGroupFile ? { title: 'Log out and in again (or run: newgrp incus-admin)' } : join, details);
  }
  if (f.access.inSession) return ok(name, `${f.user.name} is in ${f.access.group}`, details);
  if (f.access.inGroupFile) return bad('warning', name, `${f.user.name} was added to ${f.access.group} after this session started; new terminals may not have it`, { title: 'Log out and in again (or run: newgrp incus-admin)' }, details);
  return bad('failed', name, `${f.user.name} is not in ${f.access.group}`, join, details);
}

export function checkGuard(f: HealthFacts): Check {
  const name = 'COI guard';
  const g = f.guard;
  if (!g.reachable && g.denied) {
    return bad('failed', name, `the guard's socket ${g.socket} refuses ${f.user.name}: only root and members of ${f.access.group} may talk to it`, { title: `Add ${f.user.name} to ${f.access.group}, then log in again`, shell: `sudo usermod -aG ${f.access.group} ${f.user.name}` }, { socket: g.socket });
  }
  if (!g.reachable) {
    return bad('failed', name, `the guard is not running (${g.error.replace(/^the COI guard is not running \((.*)\)$/, '$1')}): stopped sandboxes are not cleaned up, and no network rules or monitor protect them`, { title: 'Start the guard', shell: 'sudo coi guard start' }, { socket: g.socket }, true);
  }
  const caps = g.capabilities ?? [];
  const details = { socket: g.socket, version: g.version, pid: g.pid, capabilities: caps, eventsConnected: g.eventsConnected };
  const capText = caps.length ? caps.join(', ') : 'none reported';
  if (!g.eventsConnected) {
    return bad('warning', name, `the guard (pid ${g.pid}) runs but has lost Incus events: it cannot react to sandboxes starting and stopping`, { title: 'Restart the guard', shell: 'sudo coi guard stop && sudo coi guard start' }, details);
  }
  if (g.version !== f.helperVersion) {
    return bad('warning', name, `the guard runs version ${g.version}, this coi is ${f.helperVersion}`, { title: 'Restart the guard to run this version', shell: 'sudo coi guard stop && sudo coi guard start' }, details);
  }
  return ok(name, `running (pid ${g.pid}, version ${g.version}); capabilities: ${capText}`, details);
}

export function poolVerdict(p: PoolFact): { status: CheckStatus; why: string[] } {
  const why: string[] = [];
  let status: CheckStatus = 'ok';
  const raise = (s: CheckStatus, w: string) => {
    why.push(w);
    if (s === 'failed' || (s === 'warning' && status === 'ok')) status = s;
  };
  if (p.status && p.status !== 'Created') raise('failed', `${p.name} is ${p.status}`);
  if (p.total !== undefined && p.used !== undefined && p.total > 0) {
    const free = p.total - p.used;
    const pct = (p.used / p.total) * 100;
    const freeText = `${(free / GiB).toFixed(1)} GiB free, ${pct.toFixed(0)} % used`;
    if (free < THRESHOLDS.poolFailFreeBytes || pct > THRESHOLDS.poolFailUsedPct) raise('failed', `${p.name} is nearly full (${freeText})`);
    else if (free < THRESHOLDS.poolWarnFreeBytes || pct > THRESHOLDS.poolWarnUsedPct) raise('warning', `${p.name} is filling up (${freeText})`);
  } else if (p.error) raise('warning', `the free space of ${p.name} cannot be read: ${p.error}`);
  if (p.driver === 'dir') raise('warning', `${p.name} uses the dir driver: every launch copies the whole image and snapshots are full copies (slow)`);
  if (p.driver === 'lvm' && p.thin === false) raise('warning', `${p.name} is LVM without a thin pool: launches copy the image`);
  return { status, why };
}

export function checkPools(f: HealthFacts): Check {
  const name = 'Storage pools';
  const want = f.config.pool;
  const pool = f.pools.find((p) => p.name === want);
  const details = {
    configured: want,
    pools: f.pools.map((p) => ({ name: p.name, driver: p.driver, ...(p.total !== undefined ? { totalBytes: p.total, usedBytes: p.used } : {}), ...(p.status ? { status: p.status } : {}) })),
  };
  if (!f.incus.reachable) return bad('warning', name, 'not checked: Incus cannot be reached', { title: 'Fix the incus check first' }, details);
  if (!pool) {
    return bad('failed', name, `the storage pool "${want}" that sandboxes use does not exist`, want === SETUP_NAMES.pool ? SETUP : { title: `Create it, or point [container] storage_pool at one of: ${f.pools.map((p) => p.name).join(', ') || 'none'}`, shell: 'coi config show' }, details);
  }
  const v = poolVerdict(pool);
  const freeText = pool.total !== undefined && pool.used !== undefined ? `, ${((pool.total - pool.used) / GiB).toFixed(1)} GiB free of ${(pool.total / GiB).toFixed(1)} GiB` : '';
  if (v.status === 'ok') return ok(name, `${pool.name} (${pool.driver}${freeText})`, details);
  const remedy =
    pool.driver === 'dir' && v.why.length === 1
      ? { title: 'Use a btrfs or ZFS pool (coi setup makes a btrfs one where it can)', shell: `incus storage create coi-btrfs btrfs size=30GiB  # then [container] storage_pool = "coi-btrfs"` }
      : { title: 'Free space: delete old snapshots, stopped sandboxes and unused images, or grow the pool', shell: 'coi snapshot list --all; coi clean; incus image list' };
  return bad(v.status === 'failed' ? 'failed' : 'warning', name, v.why.join('; '), remedy, details);
}

export function checkBridge(f: HealthFacts): Check {
  const name = 'Sandbox bridge';
  const b = f.bridge;
  if (!f.incus.reachable) return bad('warning', name, 'not checked: Incus cannot be reached', { title: 'Fix the incus check first' }, { bridge: b.name });
  if (!b.exists) return bad('failed', name, `the bridge ${b.name} does not exist${b.error ? ` (${b.error})` : ''}: sandboxes have no network`, SETUP, { bridge: b.name });
  const details = { bridge: b.name, mode: b.mode, address: b.address, state: b.state, nat: b.nat };
  if (b.state && b.state !== 'up') return bad('failed', name, `${b.name} is ${b.state}`, SETUP, details);
  if (!b.address) return bad('failed', name, `${b.name} has no IPv4 address: sandboxes get no DHCP lease`, SETUP, details);
  const mode = b.mode === 'dead-end' ? 'dead-end network for tests: nothing leaves the machine' : b.nat ? 'NAT' : 'no NAT';
  return ok(name, `${b.name} ${b.address}, ${mode}`, details);
}

export function checkForwarding(f: HealthFacts): Check {
  const name = 'IP forwarding';
  const v = f.sysctl.ipForward;
  const details = { 'net.ipv4.ip_forward': v ?? 'unreadable' };
  if (f.bridge.exists && f.bridge.mode === 'dead-end') return ok(name, `not needed on the dead-end network (ip_forward = ${v ?? '?'})`, details);
  if (v === '1') return ok(name, 'enabled: sandboxes reach the internet through NAT', details);
  return bad('failed', name, `net.ipv4.ip_forward = ${v ?? 'unreadable'}: sandboxes cannot reach the internet`, { title: 'Enable forwarding', shell: 'sudo sysctl -w net.ipv4.ip_forward=1' }, details, v === '0');
}

export function checkBridgeNetfilter(f: HealthFacts): Check {
  const name = 'Bridge filtering';
  const v = f.sysctl.bridgeNfCallIptables;
  const details = { 'net.bridge.bridge-nf-call-iptables': v ?? 'absent (br_netfilter not loaded)' };
  if (v === '1') return ok(name, 'traffic between sandboxes on the bridge passes the guard\'s rules', details);
  return bad('warning', name, v === undefined ? 'br_netfilter is not loaded: sandboxes on the same bridge reach each other without passing the guard\'s rules' : 'net.bridge.bridge-nf-call-iptables = 0: sandboxes on the same bridge reach each other without passing the guard\'s rules', { title: 'Load br_netfilter and enable it', shell: 'sudo modprobe br_netfilter && sudo sysctl -w net.bridge.bridge-nf-call-iptables=1' }, details);
}

export function checkNft(f: HealthFacts): Check {
  const name = 'nftables';
  const details = { path: f.nft.path, version: f.nft.version, incusFirewall: f.incus.reachable ? f.incus.firewall : undefined };
  if (!f.nft.path) return bad('failed', name, 'nft is not installed: the guard cannot apply network rules', { title: 'Install nftables', shell: 'sudo apt-get install -y nftables' }, details);
  if (f.incus.reachable && f.incus.firewall && f.incus.firewall !== 'nftables') {
    return bad('warning', name, `Incus drives the firewall with ${f.incus.firewall}, not nftables: its rules and the guard's live in different subsystems`, { title: 'Let Incus use nftables (remove iptables-legacy rules, restart Incus)' }, details);
  }
  return ok(name, `${f.nft.version ?? 'nft'} at ${f.nft.path}`, details);
}

/** Who relies on firewalld owning the rules: the configuration, and sandboxes labelled so. */
function firewalldBackendUsers(f: HealthFacts): string[] {
  const users = f.config.ok && f.config.networkBackend === 'firewalld' ? ['the configuration (network.backend = "firewalld")'] : [];
  const sandboxes = f.instances.filter((i) => {
    try {
      return (JSON.parse(i.config[NETWORK_LABEL] ?? '{}') as { backend?: unknown }).backend === 'firewalld';
    } catch {
      return false;
    }
  });
  if (sandboxes.length > 0) users.push(`sandbox${sandboxes.length > 1 ? 'es' : ''} ${sandboxes.map((i) => i.name).join(', ')}`);
  return users;
}

export function checkFirewalld(f: HealthFacts): Check {
  const name = 'firewalld';
  const fw = f.firewalld;
  const users = firewalldBackendUsers(f);
  const details = { running: fw.running, zoneOfBridge: fw.zoneOfBridge, explicit: fw.explicit, blocks: fw.blocks, backendUsers: users };
  if (users.length > 0 && !fw.running) {
    return bad('failed', name, `firewalld is not running, and ${users.join(' and ')} rel${users.length > 1 ? 'y' : 'ies'} on it: such sandboxes stay blocked and their launches are refused`, { title: 'Start firewalld', shell: 'sudo systemctl start firewalld' }, details);
  }
  if (users.length > 0 && f.sysctl.bridgeNfCallIptables !== '1') {
    return bad('failed', name, `net.bridge.bridge-nf-call-iptables is ${f.sysctl.bridgeNfCallIptables ?? 'absent'}, and ${users.join(' and ')} rel${users.length > 1 ? 'y' : 'ies'} on firewalld: traffic bridged between sandboxes would bypass it, so such launches are refused`, { title: 'Enable br_netfilter', shell: 'sudo modprobe br_netfilter && sudo sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1' }, details);
  }
  if (!fw.running) return ok(name, 'not running: it cannot interfere with sandbox traffic', details);
  const remedy = { title: `Put ${f.bridge.name} in the trusted zone`, shell: `sudo firewall-cmd --permanent --zone=trusted --add-interface=${f.bridge.name} && sudo firewall-cmd --reload` };
  if (fw.error || !fw.zoneOfBridge || !fw.blocks) return bad('warning', name, `firewalld is running, but what it does to ${f.bridge.name} is unknown${fw.error ? ` (${fw.error})` : ''}: it may reject the sandboxes' DHCP, DNS and forwarded traffic`, remedy, details);
  const where = fw.explicit ? `in the zone "${fw.zoneOfBridge}"` : `in no zone of its own, so in the default zone "${fw.zoneOfBridge}"`;
  if (fw.blocks.length === 0) return ok(name, `running; ${f.bridge.name} is ${where}, which passes sandbox traffic to the guard's rules`, details);
  // The guard binds a bridge that merely fell into the default zone; one an administrator placed stays where it is.
  const who = fw.explicit ? '' : ' (the guard moves it to the trusted zone when it sees firewalld; is the guard running?)';
  return bad('warning', name, `firewalld is running and ${f.bridge.name} is ${where}${who}; firewalld would block: ${fw.blocks.join('; ')}`, remedy, details);
}

/** Which profiles and instances set a key to a value. */
function holders(f: HealthFacts, pred: (config: Record<string, string>) => string[]): string[] {
  const out: string[] = [];
  for (const p of f.profiles) for (const k of pred(p.config)) out.push(`profile "${p.name}" (${k})`);
  for (const i of f.instances) for (const k of pred(i.config)) out.push(`container "${i.name}" (${k})`);
  return out;
}

export function checkPrivileged(f: HealthFacts): Check {
  const name = 'Privileged containers and profiles';
  const profiles = f.profiles.filter((p) => p.config['security.privileged'] === 'true').map((p) => p.name);
  const instances = f.instances.filter((i) => i.config['security.privileged'] === 'true').map((i) => i.name);
  const live = f.live.ran && f.live.uidMap && /^\s*0\s+0\s+4294967295\b/.test(f.live.uidMap) ? [`the temporary sandbox (uid_map "${f.live.uidMap.trim()}")`] : [];
  const details = { profiles, containers: instances };
  if (profiles.length === 0 && instances.length === 0 && live.length === 0) return ok(name, 'no profile or container is privileged', details);
  const named = [...profiles.map((p) => `profile "${p}"`), ...instances.map((i) => `container "${i}"`), ...live];
  const remedy = profiles.length
    ? { title: `Unset security.privileged on profile "${profiles[0]}"`, shell: `incus profile unset ${profiles[0]} security.privileged` }
    : { title: `Unset security.privileged on container "${instances[0] ?? ''}" (or delete it)`, shell: `incus config unset ${instances[0] ?? '<container>'} security.privileged` };
  return bad('failed', name, `privileged, so root inside is root on the host: ${named.join(', ')}`, remedy, details);
}

export function checkSecurityPosture(f: HealthFacts): Check {
  const name = 'Seccomp and AppArmor';
  const overrides = holders(f, (c) => RAW_OVERRIDES.filter((k) => (c[k] ?? '').trim() !== ''));
  const weakened = holders(f, (c) => (c['security.syscalls.deny_default'] === 'false' ? ['security.syscalls.deny_default=false'] : []));
  const liveSeccomp = f.live.ran && f.live.started ? f.live.seccomp : undefined;
  const details = { seccompInKernel: f.lsm.seccomp, apparmor: f.lsm.apparmor, rawOverrides: overrides, weakened, sandboxSeccomp: liveSeccomp };
  if (!f.lsm.seccomp) return bad('failed', name, 'the kernel has no seccomp: Incus cannot block dangerous system calls', { title: 'Boot a kernel with CONFIG_SECCOMP_FILTER' }, details);
  if (liveSeccomp !== undefined && liveSeccomp !== '2') {
    return bad('failed', name, `the temporary sandbox ran without a seccomp filter (Seccomp: ${liveSeccomp})`, { title: 'Look for raw.lxc or raw.seccomp settings in the profiles', shell: 'incus profile show default' }, details);
  }
  if (overrides.length || weakened.length) {
    return bad('warning', name, `confinement is loosened by ${[...overrides, ...weakened].join(', ')}`, { title: 'Remove the overrides unless you need them', shell: 'incus profile show default' }, details);
  }
  const aa = f.lsm.apparmor ? 'AppArmor confines containers' : 'AppArmor is not available in this kernel (containers are confined by user namespaces and seccomp)';
  return ok(name, `seccomp active${liveSeccomp === '2' ? ' in sandboxes' : ''}; no raw overrides; ${aa}`, details);
}

export function checkImage(f: HealthFacts): Check {
  const name = 'Image';
  const details = { alias: f.image.alias, fingerprint: f.image.fingerprint };
  if (!f.incus.reachable) return bad('warning', name, 'not checked: Incus cannot be reached', { title: 'Fix the incus check first' }, details);
  if (!f.image.fingerprint) {
    const remedy = f.image.alias === SETUP_NAMES.baseImage ? SETUP : { title: `Build it, or set [container] image = "${SETUP_NAMES.baseImage}" (what set-up makes)`, shell: 'coi build' };
    return bad('failed', name, `the image "${f.image.alias}" (container.image) does not exist${f.image.error ? `: ${f.image.error}` : ''}`, remedy, details);
  }
  return ok(name, `${f.image.alias} is ${f.image.fingerprint.slice(0, 12)}`, details);
}

export function imageDate(f: HealthFacts): Date | undefined {
  for (const s of [f.image.createdAt, f.image.uploadedAt]) {
    const t = s ? Date.parse(s) : NaN;
    if (Number.isFinite(t) && t > Date.UTC(2000, 0, 1)) return new Date(t);
  }
  return undefined;
}

export function checkImageAge(f: HealthFacts): Check {
  const name = 'Image age';
  const when = imageDate(f);
  if (!f.image.fingerprint) return bad('warning', name, 'not checked: no image to date', { title: 'Fix the image check first' }, {});
  if (!when) return ok(name, `the image ${f.image.alias} carries no creation date`, {});
  const days = Math.floor((f.now.getTime() - when.getTime()) / 86_400_000);
  const details = { created: when.toISOString(), days };
  if (days > THRESHOLDS.imageMaxAgeDays) {
    return bad('warning', name, `${f.image.alias} is ${days} days old: its packages miss ${days} days of security updates`, f.image.alias === SETUP_NAMES.baseImage ? { title: 'Rebuild it', shell: 'sudo coi setup --rebuild-image' } : { title: 'Rebuild it', shell: 'coi build --force' }, details);
  }
  return ok(name, `${f.image.alias} is ${days} day${days === 1 ? '' : 's'} old`, details);
}

export function checkIdmap(f: HealthFacts): Check {
  const name = 'Workspace id mapping';
  const i = f.idmap;
  const details = { uid: i.uid, gid: i.gid, needed: i.needed, uidDelegated: i.uidDelegated, gidDelegated: i.gidDelegated };
  if (!i.needed) return ok(name, `uid ${i.uid} is the sandbox user's: the workspace is mapped with an idmapped mount`, details);
  if (i.uidDelegated && i.gidDelegated) return ok(name, `uid ${i.uid} and gid ${i.gid} are delegated to root for raw.idmap`, details);
  const fix = { title: 'Delegate them', shell: 'sudo coi health --fix' };
  if (f.guard.reachable) return ok(name, `uid ${i.uid} / gid ${i.gid} are not delegated for raw.idmap yet; the guard delegates them at the first launch`, details);
  return bad('failed', name, `uid ${i.uid} / gid ${i.gid} are not delegated for raw.idmap and no guard can be asked to: launches will fail`, fix, details, true);
}

export function checkOrphans(f: HealthFacts): Check {
  const name = 'Orphaned resources';
  const o = f.orphans;
  const details = { sandboxes: o.sandboxes, veths: o.veths, locks: o.locks, ...(o.error ? { error: o.error } : {}) };
  const parts = [
    ...o.sandboxes.map((s) => `sandbox ${s.name} (${s.reason})`),
    ...o.veths.map((v) => `host interface ${v} (no bridge, no container)`),
    ...o.locks.map((l) => `launch lock ${l} (its process is gone)`),
  ];
  if (parts.length === 0) return o.error ? bad('warning', name, `not checked: ${o.error}`, { title: 'Fix the incus check first' }, details) : ok(name, 'none', details);
  return bad('warning', name, `left behind: ${parts.join(', ')}`, { title: 'Remove them', shell: 'coi health --fix' }, details, true);
}

export function checkConfig(f: HealthFacts): Check {
  const name = 'Configuration';
  if (!f.config.ok) return bad('failed', name, f.config.error, { title: 'Fix the file named above', shell: 'coi config show' }, {});
  return ok(name, `loads (${f.config.source}); image ${f.config.image}, pool ${f.config.pool}, network ${f.config.networkMode}`, { image: f.config.image, pool: f.config.pool, networkMode: f.config.networkMode });
}

export function checkLiveSandbox(f: HealthFacts): Check {
  const name = 'A sandbox starts';
  const l = f.live;
  if (!l.ran) return bad('warning', name, `not tested: ${l.why}`, { title: 'Run the live checks', shell: 'coi health' }, {});
  const details = { container: l.name, seconds: l.seconds, address: l.probe?.address };
  if (!l.started) return bad('failed', name, `a temporary sandbox did not start: ${l.error ?? 'unknown error'}`, l.remedy ?? SETUP, details);
  if (l.error) return bad('warning', name, `a temporary sandbox started, but ${l.error}`, { title: 'Run it again with details', shell: 'COI_LOG_LEVEL=debug coi health --verbose' }, details);
  if (l.probe && (!l.probe.address || !l.probe.route)) {
    return bad('failed', name, `a temporary sandbox started but got no IPv4 ${l.probe.address ? 'default route' : 'address'} on ${f.bridge.name} within 15 s: sandboxes have no network`, { title: 'Check the bridge and its DHCP (dnsmasq)', shell: `incus network info ${f.bridge.name}` }, details);
  }
  return ok(name, `a temporary sandbox started and answered in ${l.seconds?.toFixed(1) ?? '?'} s`, details);
}

export function describeProbe(p: ProbeOutcome): string {
  const icmp = p.icmp === 'reply' ? 'answered ping' : p.icmp === 'no-reply' ? 'did not answer ping' : 'ping unavailable';
  return `${p.target}: ${icmp}, TCP port ${p.port} ${p.tcp}`;
}

/** Reached: an echo reply or an established connection. A refusal or silence is not. */
export function reached(p: ProbeOutcome): boolean {
  return p.icmp === 'reply' || p.tcp === 'connected';
}

export function checkNetworkRestriction(f: HealthFacts): Check {
  const name = 'Network restriction (live)';
  const l = f.live;
  const mode = f.config.networkMode;
  if (!l.ran) return bad('warning', name, `not tested: ${l.why}`, { title: 'Run the live checks', shell: 'coi health' }, {});
  if (!l.started || !l.probe) return bad('warning', name, 'not tested: the temporary sandbox did not start or could not be probed (see live_sandbox)', { title: 'Fix live_sandbox first' }, {});
  const p = l.probe;
  if (!p.address || !p.route) return bad('warning', name, 'not tested: the temporary sandbox had no network to test from (see live_sandbox)', { title: 'Fix live_sandbox first' }, {});
  const caps = f.guard.reachable ? f.guard.capabilities ?? [] : [];
  const details = { mode, target: p.target, port: p.port, icmp: p.icmp, tcp: p.tcp, reached: reached(p), guardCapabilities: caps };
  const seen = describeProbe(p);
  if (mode === 'open') {
    return bad('warning', name, `network.mode = "open": sandboxes may reach private networks by configuration (${seen})`, { title: 'Use restricted mode unless you need the LAN', shell: 'coi config show network.mode' }, details);
  }
  if (!f.guard.reachable) {
    return bad('failed', name, `no guard runs, so nothing enforces ${mode} mode (${seen})`, { title: 'Start the guard', shell: 'sudo coi guard start' }, details, true);
  }
  if (!caps.includes('network')) {
    return bad(
      'warning',
      name,
      `the guard does not enforce network rules yet (it lists no "network" capability), so ${mode} mode is not in force: from inside a sandbox ${seen}`,
      { title: 'Update the guard to a version with network isolation, then restart it', shell: 'sudo coi guard stop && sudo coi guard start' },
      details,
    );
  }
  if (reached(p)) {
    return bad('failed', name, `${mode} mode does not hold: from inside a sandbox ${seen}`, { title: 'Restart the guard and look at its log', shell: 'sudo coi guard stop && sudo coi guard start; sudo tail /var/log/coi-guard.log' }, details);
  }
  return ok(name, `${mode} mode holds: from inside a sandbox ${seen}`, details);
}

/** Every check, in the order a person reads them. */
export const CHECKS: [key: string, check: (f: HealthFacts) => Check][] = [
  ['kernel_version', checkKernel],
  ['incus', checkIncus],
  ['permissions', checkPermissions],
  ['guard', checkGuard],
  ['config', checkConfig],
  ['incus_storage_pools', checkPools],
  ['image', checkImage],
  ['image_age', checkImageAge],
  ['privileged_profile', checkPrivileged],
  ['security_posture', checkSecurityPosture],
  ['id_delegation', checkIdmap],
  ['network_bridge', checkBridge],
  ['ip_forwarding', checkForwarding],
  ['bridge_netfilter', checkBridgeNetfilter],
  ['nft', checkNft],
  ['firewalld', checkFirewalld],
  ['orphaned_resources', checkOrphans],
  ['live_sandbox', checkLiveSandbox],
  ['network_restriction', checkNetworkRestriction],
];

export function evaluate(f: HealthFacts): HealthReport {
  const checks: Record<string, Check> = {};
  for (const [key, fn] of CHECKS) checks[key] = fn(f);
  return summarise(checks, f.now);
}

export function summarise(checks: Record<string, Check>, now: Date): HealthReport {
  const all = Object.values(checks);
  const count = (s: CheckStatus) => all.filter((c) => c.status === s).length;
  const summary = { total: all.length, passed: count('ok'), warnings: count('warning'), failed: count('failed') };
  return { status: summary.failed > 0 ? 'unhealthy' : summary.warnings > 0 ? 'degraded' : 'healthy', timestamp: now.toISOString(), checks, summary };
}
