/**
 * Which skb->mark values a guard's sandboxes carry from the ingress chain to
 * the inet hooks, so that no other guard's table mistakes them for its own.
 *
 * Every inet base chain in the forward hook sees every packet, whichever table
 * it belongs to: a packet marked for sandbox 5 of one guard is looked up in the
 * vmap of every other guard too. Before tags, scoped guards (tests) all
 * numbered their sandboxes from 2049, so a test's allowlisted address could be
 * refused by another test's restricted chain (or by a stale table a killed
 * run left behind). Now the mark is `tag << 26 | id << 16`: each guard's tag is
 * its own, ids are 1-1023 within it.
 *
 * Tags are odd: guards before tags masked the mark with 0x0fff0000 and used
 * bit 26 for nothing (host guard ids 1..N, scoped ids 2049..), so an odd tag
 * sets bit 26 and is never one of their keys; and their marks (tag 0 or 2)
 * are never one of ours. The host's guard is always tag 1; a scoped guard
 * takes the lowest free odd tag from 3 up when it starts.
 */
import { CoiError, ErrorCodes } from '../../errors';

export const MARK_MASK = 0xffff0000;
export const ID_SHIFT = 16;
export const TAG_SHIFT = 26;
export const MAX_ID = 1023;
export const MAX_TAG = 63;
export const HOST_TAG = 1;

export function markOf(tag: number, id: number): number {
  return ((tag << TAG_SHIFT) | (id << ID_SHIFT)) >>> 0;
}

/** The tag of a guard: the host's is fixed; a scoped guard's is the lowest odd one nobody else uses. */
export function chooseTag(scope: string, used: ReadonlySet<number>): number {
  if (!scope) return HOST_TAG;
  for (let t = HOST_TAG + 2; t <= MAX_TAG; t += 2) if (!used.has(t)) return t;
  throw new CoiError(ErrorCodes.ALREADY_EXISTS, `every network mark tag is taken by another guard's tables (${used.size} in use): this guard cannot tell its sandboxes' packets apart`, {
    remedy: { title: 'Remove the tables of guards that no longer run (nft list tables | grep coi_guard_)' },
  });
}
