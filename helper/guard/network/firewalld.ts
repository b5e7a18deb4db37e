/**
 * firewalld and the sandbox bridge, pure: what firewalld's zone would do to
 * sandbox traffic, and what the guard changes so that it does nothing.
 *
 * Why it matters: firewalld's own forward and input chains run after ours in
 * the same hooks, and an `accept` in our table does not overrule a `reject` in
 * theirs. A bridge that falls into firewalld's default zone (public on Fedora,
 * RHEL, openSUSE) has the sandboxes' DHCP and DNS to the host rejected, and
 * their traffic to other networks too. The Incus documentation's answer is to
 * put the bridge in the `trusted` zone: firewalld then passes everything from
 * it and the guard's rules alone decide.
 *
 * The guard does that only for a bridge that is in no zone of its own (it fell
 * into the default zone): a bridge an administrator put in some zone stays
 * there, and `coi health` says what that zone blocks.
 *
 * Parsing is of `firewall-cmd` output, which is stable across 0.9–2.x.
 */

/** The zone firewalld passes everything from. */
export const TRUSTED_ZONE = 'trusted';

/** What `firewall-cmd --info-zone=<zone>` says that matters here. */
export interface ZoneInfo {
  name: string;
  /** default, ACCEPT, DROP, REJECT, %%REJECT%% */
  target: string;
  interfaces: string[];
  services: string[];
  /** "53/udp", "67-68/udp" */
  ports: string[];
  /** Intra-zone forwarding (firewalld 0.9+); absent in older output. */
  forward?: boolean;
  richRules: string[];
}

export function parseZoneInfo(text: string): ZoneInfo | undefined {
  const lines = text.split('\n');
  const head = /^(\S+)(\s+\(.*\))?\s*$/.exec(lines[0] ?? '');
  if (!head) return undefined;
  const fields = new Map<string, string>();
  const rich: string[] = [];
  let inRich = false;
  for (const l of lines.slice(1)) {
    const m = /^\s+([a-z][a-z -]*):\s?(.*)$/.exec(l);
    if (m && !(inRich && l.startsWith('\t'))) {
      inRich = m[1] === 'rich rules';
      fields.set(m[1]!, m[2]!.trim());
      continue;
    }
    if (inRich && l.trim()) rich.push(l.trim());
  }
  if (!fields.has('target')) return undefined;
  const list = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
  const fwd = fields.get('forward');
  return {
    name: head[1]!,
    target: fields.get('target')!,
    interfaces: list('interfaces'),
    services: list('services'),
    ports: list('ports'),
    ...(fwd === 'yes' || fwd === 'no' ? { forward: fwd === 'yes' } : {}),
    richRules: rich,
  };
}

/** Does a "53/udp" or "50-60/udp" port entry cover this port and protocol? */
function portCovered(entries: readonly string[], port: number, proto: 'tcp' | 'udp'): boolean {
  return entries.some((e) => {
    const m = /^(\d+)(?:-(\d+))?\/(tcp|udp)$/.exec(e);
    if (!m || m[3] !== proto) return false;
    const lo = Number(m[1]);
    const hi = m[2] ? Number(m[2]) : lo;
    return port >= lo && port <= hi;
  });
}

/**
 * What a bridge in this zone would have firewalld block of sandbox traffic,
 * in words a person can act on; empty when nothing. Rich rules are not
 * interpreted: they are mentioned, as they may allow (or block) more.
 */
export function zoneBlocks(zone: ZoneInfo): string[] {
  if (zone.target === 'ACCEPT') return [];
  const out: string[] = [];
  const has = (svc: string) => zone.services.includes(svc);
  if (!has('dhcp') && !portCovered(zone.ports, 67, 'udp')) out.push('DHCP from the sandboxes to the host (udp 67): new sandboxes get no address');
  if (!has('dns') && !(portCovered(zone.ports, 53, 'udp') && portCovered(zone.ports, 53, 'tcp'))) out.push('DNS from the sandboxes to the host (53): names do not resolve inside');
  // Forwarded traffic to other zones needs a policy (firewalld 0.9+); the zone's target decides it otherwise.
  out.push(`traffic forwarded from the sandboxes to other networks (zone "${zone.name}" has target ${zone.target}${zone.forward === false ? ' and no forwarding' : ''})`);
  if (zone.richRules.length > 0) out.push(`and whatever its ${zone.richRules.length} rich rule(s) say`);
  return out;
}

/** What firewalld knows about one bridge. */
export interface BridgeZoneFacts {
  bridge: string;
  defaultZone: string;
  /** The zone the bridge is bound to at runtime; undefined = none (it falls into the default zone). */
  runtimeZone?: string;
  /** The zone of the permanent configuration; undefined = none. */
  permanentZone?: string;
}

/** firewall-cmd argument lists, each one call. */
export type FirewallCmd = string[];

export interface BridgeZonePlan {
  /** The zone that applies to the bridge's traffic once the plan ran. */
  zone: string;
  /** Whether the zone was chosen by an administrator (then left alone). */
  explicit: boolean;
  commands: FirewallCmd[];
}

/**
 * The commands that make firewalld pass a bridge's traffic, when it falls
 * into a default zone other than trusted: bind it to trusted now and in the
 * permanent configuration (so a `firewall-cmd --reload` or a restart keeps it).
 * A bridge with a zone of its own, runtime or permanent, is left alone.
 */
export function planBridgeZone(f: BridgeZoneFacts): BridgeZonePlan {
  if (f.runtimeZone) {
    // Runtime says trusted but the permanent configuration does not: a reload would undo it.
    const commands = f.runtimeZone === TRUSTED_ZONE && !f.permanentZone ? [['--permanent', `--zone=${TRUSTED_ZONE}`, `--add-interface=${f.bridge}`]] : [];
    return { zone: f.runtimeZone, explicit: f.runtimeZone !== TRUSTED_ZONE || !!f.permanentZone, commands };
  }
  if (f.permanentZone) {
    // Bound in the permanent configuration only (added with --permanent, not reloaded yet): apply it now.
    return { zone: f.permanentZone, explicit: true, commands: [[`--zone=${f.permanentZone}`, `--add-interface=${f.bridge}`]] };
  }
  if (f.defaultZone === TRUSTED_ZONE) return { zone: TRUSTED_ZONE, explicit: false, commands: [] };
  return {
    zone: TRUSTED_ZONE,
    explicit: false,
    commands: [
      [`--zone=${TRUSTED_ZONE}`, `--add-interface=${f.bridge}`],
      ['--permanent', `--zone=${TRUSTED_ZONE}`, `--add-interface=${f.bridge}`],
    ],
  };
}

/** `firewall-cmd --get-zone-of-interface=X` output: the zone, or undefined for "no zone". */
export function parseZoneOf(stdout: string, exitCode: number): string | undefined {
  const z = stdout.trim();
  if (exitCode !== 0 || !z || z === 'no zone' || /\s/.test(z)) return undefined;
  return z;
}
