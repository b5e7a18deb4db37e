/**
 * What `coi health` found on the host, as plain data. probe.ts gathers it
 * (the only part that touches Incus, the guard, files and programs);
 * evaluate.ts turns it into checks, purely, so every verdict is unit-tested
 * with hand-made facts.
 */

export interface PoolFact {
  name: string;
  driver: string;
  status?: string;
  /** Bytes, from /1.0/storage-pools/NAME/resources. */
  total?: number;
  used?: number;
  /** Why the resources could not be read. */
  error?: string;
  /** LVM: thin pool in use. */
  thin?: boolean;
}

export interface ProbeOutcome {
  target: string;
  port: number;
  /** ICMP echo from inside the sandbox (as root, like an agent with sudo). */
  icmp: 'reply' | 'no-reply' | 'unavailable';
  /** A TCP connect from inside the sandbox. */
  tcp: 'connected' | 'refused' | 'unreachable' | 'timeout' | 'error';
  /** The sandbox's IPv4 address and default route when it probed; without them nothing is reachable, blocked or not. */
  address?: string;
  route?: string;
  /** The probe's raw output, for --verbose. */
  raw: string;
}

export type LiveFacts =
  | { ran: false; why: string }
  | {
      ran: true;
      started: boolean;
      name?: string;
      seconds?: number;
      error?: string;
      remedy?: { title: string; shell?: string };
      /** The Seccomp: field of the sandbox's init (2 = filter). */
      seccomp?: string;
      /** First line of /proc/self/uid_map inside. */
      uidMap?: string;
      probe?: ProbeOutcome;
    };

export interface HealthFacts {
  now: Date;
  helperVersion: string;
  kernelRelease: string;
  user: { uid: number; name: string; root: boolean };
  /** The effective configuration of the current directory, or why it does not load. */
  config: { ok: true; image: string; pool: string; networkMode: 'restricted' | 'allowlist' | 'open'; networkBackend?: 'nftables' | 'firewalld'; source: string } | { ok: false; error: string; image: string; pool: string; networkMode: 'restricted' | 'allowlist' | 'open' };
  incus: { reachable: true; serverVersion: string; apiVersion: string; firewall?: string; endpoint: string } | { reachable: false; endpoint: string; error: string; code: string };
  socket: { path: string; exists: boolean; mode?: number; gid?: number };
  access: { group: string; groupExists: boolean; inGroupFile: boolean; inSession: boolean };
  guard:
    | { reachable: true; socket: string; version: string; pid: number; capabilities?: string[]; eventsConnected: boolean }
    | { reachable: false; socket: string; error: string; /** The socket exists but refuses this user (not in the admin group). */ denied?: boolean };
  pools: PoolFact[];
  bridge: { name: string; exists: false; error?: string } | { name: string; exists: true; managed: boolean; mode: 'nat' | 'dead-end' | 'unknown'; address?: string; state?: string; nat: boolean };
  sysctl: { ipForward?: string; bridgeNfCallIptables?: string };
  nft: { path?: string; version?: string; error?: string };
  /**
   * zone: the zone that applies to the bridge (its own, else the default one);
   * explicit: the bridge is bound to it (not merely in the default zone);
   * blocks: what that zone would block of sandbox traffic (empty: nothing).
   */
  firewalld: { running: boolean; zoneOfBridge?: string; explicit?: boolean; blocks?: string[]; error?: string };
  lsm: { apparmor: boolean; seccomp: boolean };
  profiles: { name: string; config: Record<string, string> }[];
  instances: { name: string; config: Record<string, string>; status: string }[];
  image: { alias: string; fingerprint?: string; createdAt?: string; uploadedAt?: string; error?: string };
  idmap: { needed: boolean; uid: number; gid: number; uidDelegated: boolean; gidDelegated: boolean };
  orphans: { sandboxes: { name: string; reason: string }[]; veths: string[]; locks: string[]; error?: string };
  live: LiveFacts;
}
