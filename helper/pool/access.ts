/**
 * A launch's side of the warm pool: asking the guard for a member, and making
 * a taken member the sandbox a cold launch would have made.
 */
import type { InstanceCreate } from '../incus/types';
import { GuardClient } from '../guard/client';
import type { Log } from '../log';
import { CoiError } from '../errors';
import { Adoption, GuardPoolDrain, GuardPoolTake } from './protocol';
import { devicesToAttach, PoolSpec } from './spec';

export interface PoolAccess {
  /** `[pool] size`: members the guard keeps ready for this workspace and settings. */
  size: number;
  /**
   * Records the demand and, with a name, takes that idle member and has the
   * guard make it the sandbox (`adopt`) and fence it. `taken: false` when the
   * guard would not (or cannot be reached): the launch goes cold.
   */
  take(spec: PoolSpec, name?: string, adopt?: Adoption, opts?: { endWithClient?: boolean }): Promise<TakeResult>;
}

export type TakeResult = {
  taken: boolean;
  mode?: string;
  warnings?: string[];
  /**
   * With `endWithClient`: closes the connection the guard watches, and with
   * it hands the sandbox's deletion to the guard. False when that connection
   * was lost before (the guard restarted): the caller ends the sandbox itself.
   */
  end?: () => boolean;
};

/** A warm member was not handed over: the launch chooses again. */
export class PoolMiss extends Error {
  constructor() {
    super('the warm member was not handed over');
  }
}

/** Over a fresh guard connection; a failure to reach the guard means "no warm container", never a failed launch. */
export function guardPool(socketPath: string, size: number, log: Log): PoolAccess {
  return {
    size,
    async take(spec, name, adopt, opts = {}) {
      const g = new GuardClient({ socketPath });
      let keep = false;
      try {
        try {
          // The take's answer proves the guard accepted us: no round trip before it.
          await g.connect({ timeoutMs: 3_000, prove: false });
        } catch (e) {
          log.debug(`warm pool unavailable: ${(e as Error).message}`);
          return { taken: false };
        }
        try {
          const endWithClient = !!(opts.endWithClient && name && adopt);
          const r = await g.request(GuardPoolTake, { spec, size, ...(name ? { name } : {}), ...(adopt ? { adopt } : {}), ...(endWithClient ? { endWithClient } : {}) });
          if (name && !r.taken) log.debug(`warm pool: ${name} not taken: ${r.reason ?? 'no reason given'}`);
          if (!r.taken || !endWithClient) return r;
          keep = true;
          return {
            ...r,
            end: () => {
              const open = g.connected;
              g.close();
              return open;
            },
          };
        } catch (e) {
          // Taken but not fenced is a failed launch (the guard deleted the member); a guard without
          // the pool (older) is no warm container.
          const unknownMethod = e instanceof CoiError && (e.details as { rpcCode?: number } | undefined)?.rpcCode === -32601;
          if (name && adopt && !unknownMethod) throw e;
          log.debug(`warm pool unavailable: ${(e as Error).message}`);
          return { taken: false };
        }
      } finally {
        if (!keep) g.close();
      }
    },
  };
}

/** Asks the guard to forget pools of this prefix and delete their untaken members (undefined: no guard). */
export async function drainPool(socketPath: string, prefix: string): Promise<string[] | undefined> {
  const g = new GuardClient({ socketPath });
  try {
    await g.connect({ timeoutMs: 3_000 });
    return (await g.request(GuardPoolDrain, { prefix })).deleted;
  } catch {
    return undefined;
  } finally {
    g.close();
  }
}

/**
 * What turns a taken member into the sandbox `cold` describes: its labels,
 * limits and network label, and the devices the member was made without (the
 * SSH agent's proxy). The guard applies it in one update and re-fences the
 * member before it answers; nothing of the agent runs before then.
 */
export function adoption(cold: InstanceCreate): Adoption {
  return { config: { ...(cold.config ?? {}) }, devices: devicesToAttach(cold) };
}
