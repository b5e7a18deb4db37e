/** The desired network state the guard renders into nftables. */

export type NetworkMode = 'restricted' | 'allowlist' | 'open';
export const NETWORK_MODES: readonly NetworkMode[] = ['restricted', 'allowlist', 'open'];

/** One address of an `allowed_domains` name, resolved on the host. */
export interface ResolvedIp {
  ip: string;
  /**
   * When the address stops being allowed for new connections (ms since the
   * epoch): the record's TTL plus whatever grace the refresher adds. Absent =
   * until the next render leaves it out. Live connections outlast it either
   * way: established flows are accepted before any set is looked at.
   */
  expiresAt?: number;
}

export interface SandboxNetwork {
  /** Incus instance name. */
  container: string;
  /** The fixed host-side veth name (NIC `host_name`), at most 15 characters. */
  hostIface: string;
  mode: NetworkMode;
  /** The bridge address the container uses as gateway, DNS server and DHCP server. */
  gatewayV4: string;
  /** restricted: lift the RFC 1918 block and the block of the host's own addresses. */
  allowLocalNetwork: boolean;
  /** allowlist: addresses and CIDRs allowed (IPv4). */
  allowCidrs: string[];
  /** allowlist: addresses resolved from `allowed_domains`. */
  resolvedIps: ResolvedIp[];
  /** allowlist: when given, only these TCP/UDP ports (plus ICMP echo) on allowed addresses. */
  allowedPorts?: number[];
  /** `block_metadata_endpoint = false`: 169.254.169.254 reachable (restricted and allowlist). */
  allowMetadata?: boolean;
  /** `[[network.hosts]]`: these addresses reachable in restricted and allowlist, on `ports` when not empty. */
  allowHosts?: HostAllow[];
  /**
   * `backend = "firewalld"`: firewalld's zone and policy decide (firewalld-policy.ts);
   * the guard's tables only count the sandbox's frames.
   */
  backend?: 'firewalld';
}

export interface HostAllow {
  ip: string;
  /** TCP/UDP ports; empty = every port and protocol. */
  ports: number[];
}

/**
 * An interface whose rules are not in place yet: everything it sends is dropped.
 * Put it in place before the container starts (the chain binds to the name
 * before the device exists). While listed, it drops everything even if the
 * same interface also has sandbox rules: leave it out once they are final.
 */
export interface BootBlock {
  container: string;
  hostIface: string;
}

export interface NetworkState {
  sandboxes: SandboxNetwork[];
  blockAll: BootBlock[];
}
