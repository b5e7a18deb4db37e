/**
 * The shape every detector shares, modelled on a Falco rule: a condition
 * (`evaluate`), an output carrying the evidence and the process lineage, a
 * priority (`severity`), tags (`mitre`) and named exceptions. Detectors are
 * pure: the same snapshots and context always give the same events, so each
 * is tested on fixtures and the monitor loop owns all I/O and time.
 */
import type { LineageEntry, Snapshot } from '../model';

export type Severity = 'info' | 'warning' | 'high' | 'critical';

export const SEVERITY_ORDER: Record<Severity, number> = { info: 0, warning: 1, high: 2, critical: 3 };

export function maxSeverity(a: Severity, b: Severity): Severity {
  return SEVERITY_ORDER[a] >= SEVERITY_ORDER[b] ? a : b;
}

export type ThreatCategory =
  | 'reverse_shell'
  | 'suspicious_connection'
  | 'credential_access'
  | 'large_io'
  | 'process_storm'
  | 'dns_tunnel'
  | 'monitor';

export interface ProcessEvidence {
  pid: number;
  /** The pid inside the container, what a person in there would see. */
  nsPid?: number;
  comm: string;
  exe?: string;
  argv: string[];
  uid?: number;
  /** The process, then its parent, up to the container's init. */
  lineage: LineageEntry[];
}

export interface NetworkEvidence {
  proto: 'tcp' | 'udp';
  remote: string;
  port: number;
  /** "address:port" on the container's side. */
  local: string;
  state?: string;
  /** Which standard streams (or fds) are on this socket, for stdio findings. */
  fds?: number[];
}

export interface FilesystemEvidence {
  /** Paths named on the command line or held open. */
  paths?: string[];
  readBytes?: number;
  writeBytes?: number;
  windowMs?: number;
  readBytesPerSec?: number;
  writeBytesPerSec?: number;
}

export interface ProcessCountEvidence {
  count: number;
  threshold: number;
  spawned?: number;
  spawnThreshold?: number;
  windowMs?: number;
}

export interface DnsEvidence {
  /** Empty when only the packet was seen (the kernel's notes carry no name). */
  domain: string;
  queries: number;
  windowMs: number;
  /** A few of the offending names, capped. */
  examples: string[];
  maxLabelLength?: number;
  maxEntropy?: number;
  /** The resolver the noted queries went to, and from which container address. */
  resolver?: string;
  source?: string;
}

export interface ThreatEvidence {
  process?: ProcessEvidence;
  network?: NetworkEvidence;
  filesystem?: FilesystemEvidence;
  processCount?: ProcessCountEvidence;
  dns?: DnsEvidence;
  /** The rule inside the detector that matched, e.g. "reverse-shell/shell-stdio-network". */
  rule: string;
  /** What makes two events "the same" for de-duplication (with category and title). */
  key: string;
}

export interface ThreatEvent {
  id: string;
  /** ISO 8601. */
  time: string;
  level: Severity;
  category: ThreatCategory;
  /** Fixed text per rule: never contains container-controlled data. */
  title: string;
  /** For a person; container-controlled parts are made display-safe. */
  description: string;
  evidence: ThreatEvidence;
  /** The detector's id. */
  detector: string;
  mitre: string[];
}

/** A documented reason a detector stays silent, like Falco's named exceptions. */
export interface NamedException {
  name: string;
  description: string;
}

export interface NetworkPolicyContext {
  /** open: anything goes; restricted: private ranges blocked; allowlist: only `allowlist` reachable. */
  mode: 'open' | 'restricted' | 'allowlist';
  /** The container's gateway(s) and resolvers: talking to them is normal. */
  gateways: string[];
  /** CIDRs or addresses the container may reach (allowlist mode). */
  allowlist: string[];
}

export interface DnsQuery {
  /** Lower-case, no final dot; empty when `unprintable`. */
  name: string;
  /** ms since epoch. */
  time: number;
  /** A name the resolver could not print (8-bit bytes): data, not a host name. */
  unprintable?: boolean;
  /** A, AAAA, TXT, … when known. */
  type?: string;
}

/**
 * A packet the guard's nft rules logged for this container (dropped or
 * refused), as the network event the guard's kmsg reader produces
 * (`{container, rule, action, src, dst, proto, dport}`; see
 * network/kmsg.ts PacketEvent). The container is known from the rule's
 * prefix, never from the packet's source address.
 */
export interface NetworkPacket {
  /** ms since epoch, when the guard read it. */
  time: number;
  /** The rule that logged it: private, linklocal, cgnat, host, dns, notallowed, boot, dnslabel, dnslong, dnsrate, … */
  rule: string;
  /** `log`: let through but noted (a DNS query shaped like a tunnel), not blocked. */
  action: 'drop' | 'reject' | 'log';
  proto?: string;
  src?: string;
  dst?: string;
  dport?: number;
}

/**
 * Something the kernel saw a container process do (the guard's trace of it),
 * reported even when the process is gone by the time anyone looks.
 */
export interface KernelActivity {
  /** environ-open: opened /proc/<digits>/environ. */
  kind: 'environ-open';
  /** Host pid (or thread id) of the process that did it. */
  pid: number;
  /** Its task name at that moment. */
  comm: string;
  /** ms since epoch, when the guard read it. */
  time: number;
  /** Its parent, from the kernel's fork event, when seen. */
  ppid?: number;
  /** The program it exec'd, when seen. */
  exe?: string;
}

export interface MonitorThresholds {
  pollIntervalSec: number;
  fileReadThresholdMb: number;
  fileReadRateMbPerSec: number;
  /** Window the rate is averaged over; a rate over a single short poll is noise. */
  rateWindowSec: number;
  processCountThreshold: number;
  processSpawnRateThreshold: number;
  reverseShellOneLiners: 'critical' | 'warn' | 'off';
  /** DNS queries per minute before the rate alone is reported. */
  dnsQueryThreshold: number;
}

export interface DetectorContext {
  thresholds: MonitorThresholds;
  /** Earlier snapshots of the same container, oldest first, not including `current`. */
  history?: readonly Snapshot[];
  network?: NetworkPolicyContext;
  /** DNS queries of this sandbox by name (the bridge resolver's log), for the DNS detector. */
  dnsQueries?: readonly DnsQuery[];
  /** Packets the firewall logged for this container since the previous poll. */
  packets?: readonly NetworkPacket[];
  /** What the kernel trace saw since the previous look. */
  activity?: readonly KernelActivity[];
  /** Names of exceptions to switch off (e.g. "package-managers"), for a stricter profile. */
  disabledExceptions?: readonly string[];
  /** Ids for events; random by default, fixed in tests. */
  newId?: () => string;
}

export interface Detector {
  id: string;
  title: string;
  /** The highest level it can raise. */
  severity: Severity;
  mitre: string[];
  exceptions: NamedException[];
  evaluate(current: Snapshot, previous: Snapshot | undefined, ctx: DetectorContext): ThreatEvent[];
}
