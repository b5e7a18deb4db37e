/** Where the guard lives on the host. One guard per host; tests may point COI_GUARD_SOCKET elsewhere. */
export const DEFAULT_GUARD_SOCKET = '/run/coi/guard.sock';
export const DEFAULT_GUARD_LOG = '/var/log/coi-guard.log';

export function guardSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.COI_GUARD_SOCKET || DEFAULT_GUARD_SOCKET;
}

/** The group whose members may talk to the guard: the same that may talk to Incus. */
export function adminGroupName(env: NodeJS.ProcessEnv = process.env): string {
  return env.COI_ADMIN_GROUP || 'incus-admin';
}
