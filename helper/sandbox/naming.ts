/**
 * Container names, compatible with the Go coi: <prefix><8 hex of sha256(real
 * absolute workspace path)>-<slot>, slots 1..10. The host-side veth name is
 * derived from the container name so the guard can match rules on an interface
 * that root inside the container cannot rename or re-address.
 */
import { createHash } from 'node:crypto';
import { CoiError, ErrorCodes } from '../errors';

export const MAX_SLOTS = 10;
export const DEFAULT_PREFIX = 'coi-';

export function workspaceHash(realWorkspacePath: string): string {
  return createHash('sha256').update(realWorkspacePath).digest('hex').slice(0, 8);
}

export function containerName(prefix: string, realWorkspacePath: string, slot: number): string {
  if (!Number.isInteger(slot) || slot < 1 || slot > MAX_SLOTS) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `slot must be a whole number from 1 to ${MAX_SLOTS}, not ${slot}`);
  }
  return `${prefix}${workspaceHash(realWorkspacePath)}-${slot}`;
}

/** The slot of a container of this workspace, or undefined when the name is not one. */
export function slotOf(prefix: string, hash: string, name: string): number | undefined {
  const m = new RegExp(`^${escapeRegExp(prefix)}${hash}-(\\d{1,2})$`).exec(name);
  const slot = m ? Number(m[1]) : NaN;
  return slot >= 1 && slot <= MAX_SLOTS ? slot : undefined;
}

/** Linux interface names are at most 15 bytes: "coi" + 11 hex characters. */
export function hostVethName(container: string): string {
  return `coi${createHash('sha256').update(container).digest('hex').slice(0, 11)}`;
}

/** tmux session of the agent inside the container. */
export function tmuxSession(container: string): string {
  return `coi-${container}`;
}

export function validatePrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9-]{0,20}$/.test(prefix)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `COI_CONTAINER_PREFIX "${prefix}" must start with a letter and hold only a-z, 0-9 and "-" (at most 21 characters)`);
  }
  return prefix;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
