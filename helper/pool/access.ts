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
  /** A take is near: connect to the guard now (see guardPool). */
  prepare?(): void;
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

/** How long a connection made by `prepare` waits for its take before it is closed. */
const PREPARED_MS = 5_000;

/**
 * Over a fresh guard connection; a failure to reach the guard means "no warm container", never a
 * failed launch.
 *
 * `prepare` dials ahead of the take: the guard works out who is on the other end of a connection
 * as it accepts it (~15 ms of `ss`), which then happens while the launch lists its sandboxes instead
 * of before the take. A prepared connection does not keep the process alive, and one no take used
 * is closed after a few seconds.
 */
export function guardPool(socketPath: string, size: number, log: Log): PoolAccess {
  const dial = async (): Promise<GuardClient | undefined> => {
    const g = new GuardClient({ socketPath });
    try {
      // The take's answer proves the guard accepted us: no round trip before it.
      await g.connect({ timeoutMs: 3_000, prove: false });
      return g;
    } catch (e) {
      log.debug(`warm pool unavailable: ${(e as Error).message}`);
      g.close();
      return undefined;
    }
  };
  let prepared: Promise<GuardClient | undefined> | undefined;
  return {
    size,
    prepare() {
      if (prepared) return;
      const p = dial().then((g) => {
        g?.keepAlive(false);
        return g;
      });
      prepared = p;
      const t = setTimeout(() => {
        if (prepared !== p) return;
        prepared = undefined;
        void p.then((g) => g?.close());
      }, PREPARED_MS);
      t.unref();
    },
    async take(spec, name, adopt, opts = {}) {
      const early = prepared;
      prepared = undefined;
      // A prepared dial that failed moments ago is not tried again; one lost since (a guard restart) is.
      let g = early ? await early : await dial();
      if (g && !g.connected) {
        g.close();
        g = await dial();
      }
      if (!g) return { taken: false };
      g.keepAlive(true);
      let keep = false;
      try {
        try {
          const endWithClient = !!(opts.endWithClient && name && adopt);
          const r = await g.request(GuardPoolTake, { spec, size, ...(name ? { name } : {}), ...(adopt ? { adopt } : {}), ...(endWithClient ? { endWithClient } : {}) });
          if (name && !r.taken) log.debug(`warm pool: ${name} not taken: ${r.reason ?? 'no reason given'}`);
          if (!r.taken || !endWithClient) return r;
          keep = true;
          const client = g;
          return {
            ...r,
            end: () => {
              const open = client.connected;
              client.close();
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
