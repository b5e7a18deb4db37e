/**
 * Which slot a launch takes. Rules of the Go coi: slots 1..10; first free wins;
 * an explicit slot whose container runs falls through to the next free one;
 * persistent launches restart their lowest stopped container instead of making
 * a new one.
 */
import { CoiError, ErrorCodes } from '../errors';
import { MAX_SLOTS } from './naming';
import type { SandboxState } from './labels';

export interface SlotChoice {
  slot: number;
  /** True when an existing (stopped, persistent) container is restarted. */
  reuse: boolean;
  notice?: string;
}

export interface ExistingSlot {
  state: SandboxState;
  persistent: boolean;
}

export function chooseSlot(existing: Map<number, ExistingSlot>, opts: { requested?: number; persistent: boolean }): SlotChoice {
  if (opts.requested !== undefined) {
    if (!Number.isInteger(opts.requested) || opts.requested < 1 || opts.requested > MAX_SLOTS) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `--slot must be from 1 to ${MAX_SLOTS}, not ${opts.requested}`);
    }
    const cur = existing.get(opts.requested);
    if (!cur) return { slot: opts.requested, reuse: false };
    if (cur.state === 'stopped' && cur.persistent) return { slot: opts.requested, reuse: true };
    const free = firstFree(existing);
    return { slot: free, reuse: false, notice: `slot ${opts.requested} is in use (${cur.state}); using slot ${free}` };
  }
  if (opts.persistent) {
    const stopped = [...existing.entries()].filter(([, s]) => s.persistent && s.state === 'stopped').map(([n]) => n).sort((a, b) => a - b);
    if (stopped.length > 0) return { slot: stopped[0]!, reuse: true };
  }
  return { slot: firstFree(existing), reuse: false };
}

function firstFree(existing: Map<number, ExistingSlot>): number {
  for (let s = 1; s <= MAX_SLOTS; s++) if (!existing.has(s)) return s;
  throw new CoiError(ErrorCodes.ALREADY_EXISTS, `all ${MAX_SLOTS} slots of this workspace are taken`, {
    remedy: { title: 'Remove stopped sandboxes', shell: 'coi clean' },
  });
}
