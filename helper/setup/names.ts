/** Names of what set-up creates on the host. Everything in Incus also carries user.coi.* keys. */
export const SETUP_NAMES = {
  pool: 'coi',
  bridge: 'coibr0',
  baseImage: 'coi-base',
  deadEndNamespace: 'coi-deadend',
  deadEndVeth: 'coi-deadend0',
  deadEndTable: 'coi_deadend',
} as const;

/**
 * The test hosts of the dead-end network: each address lives in the gateway
 * namespace, so a container reaches it over L2 and nothing goes further.
 * Never 203.0.113.0/24: the package registries are reached through it here.
 */
export const DEAD_END_HOSTS = {
  private: '10.99.0.2',
  metadata: '169.254.169.254',
  cgnat: '100.64.0.2',
  internet: '198.51.100.2',
  internet2: '198.51.100.3',
} as const;
