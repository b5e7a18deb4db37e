/** The parts of Incus API objects we read and write. Field names are Incus's own. */

export interface ServerInfo {
  api_version: string;
  auth: string;
  environment?: {
    server_version?: string;
    kernel_version?: string;
    storage?: string;
    server_name?: string;
    driver?: string;
  };
}

export type InstanceStatus = 'Running' | 'Stopped' | 'Frozen' | 'Error' | 'Starting' | 'Stopping' | 'Freezing' | string;

export type Devices = Record<string, Record<string, string>>;

export interface InstanceCreate {
  name: string;
  type?: 'container';
  source: { type: 'image'; alias?: string; fingerprint?: string; server?: string; protocol?: 'simplestreams' | 'incus'; mode?: 'pull' | 'local' } | { type: 'none' } | { type: 'copy'; source: string };
  config?: Record<string, string>;
  devices?: Devices;
  profiles?: string[];
  ephemeral?: boolean;
  start?: boolean;
  description?: string;
}

export interface InstanceState {
  status: InstanceStatus;
  status_code: number;
  pid: number;
  processes: number;
  network?: Record<string, { host_name?: string; addresses: { family: string; address: string; netmask: string; scope: string }[] }>;
}

export interface InstanceFull {
  name: string;
  status: InstanceStatus;
  status_code: number;
  type: string;
  created_at: string;
  config: Record<string, string>;
  devices: Devices;
  expanded_config?: Record<string, string>;
  expanded_devices?: Devices;
  profiles: string[];
  project?: string;
  state?: InstanceState | null;
}

export type StateAction = 'start' | 'stop' | 'restart' | 'freeze' | 'unfreeze';

export interface Operation {
  id: string;
  class: string;
  description: string;
  status: 'Pending' | 'Running' | 'Success' | 'Failure' | 'Cancelled' | string;
  status_code: number;
  metadata: unknown;
  err: string;
  may_cancel: boolean;
  resources?: Record<string, string[]>;
}

export interface RawEvent {
  type: string;
  timestamp: string;
  project?: string;
  location?: string;
  metadata: unknown;
}

export interface InstanceSnapshot {
  name: string;
  created_at: string;
  /** "0001-01-01T00:00:00Z" when it never expires. */
  expires_at?: string;
  stateful: boolean;
  /** Bytes, or -1 when the storage driver cannot tell (btrfs without quotas, dir). */
  size?: number;
  config?: Record<string, string>;
  devices?: Devices;
  profiles?: string[];
}

export interface StoragePoolResources {
  space: { used: number; total: number };
  inodes?: { used: number; total: number };
}

export interface ImageInfo {
  fingerprint: string;
  size: number;
  type?: string;
  architecture?: string;
  created_at: string;
  uploaded_at: string;
  properties: Record<string, string>;
  aliases: { name: string; description: string }[];
}

export interface StoragePool {
  name: string;
  driver: string;
  config: Record<string, string>;
  status?: string;
}

export interface Network {
  name: string;
  type: string;
  managed: boolean;
  config: Record<string, string>;
  status?: string;
}

export interface Profile {
  name: string;
  config: Record<string, string>;
  devices: Devices;
  description: string;
}
