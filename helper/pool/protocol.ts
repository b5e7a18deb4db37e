/**
 * The guard's warm-pool methods. Kept beside the pool (not in
 * protocol/methods.ts) so the feature stays in one place; the same constants
 * are used by the guard and by clients.
 */
import { z } from 'zod';
import { once } from '../lazy';
import { request } from '../protocol/rpc';
import { poolSpecSchema } from './spec';

const instanceName = once(() => z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/, 'an instance name (letters, digits and "-")'));

/**
 * Asks the guard to keep `size` members of this spec ready (0: none), and,
 * with `name`, to hand that idle member over to the caller. The guard marks
 * it taken (never to return to the pool) only if it is idle, of this spec,
 * running and made from the image the alias points to now.
 */
const adoption = once(() =>
  z
    .object({
      config: z.record(z.string().max(256), z.string().max(65_536)),
      devices: z.record(z.string().max(64), z.record(z.string().max(64), z.string().max(4096))),
    })
    .strict()
);
export type Adoption = z.infer<ReturnType<typeof adoption>>;

/**
 * With `adopt`, the guard also makes the taken member the sandbox (labels,
 * limits, network label, the devices the member lacks), in one update, and
 * re-fences it before answering (as guard/secureSandbox would); when that
 * fails it deletes the member and the request fails.
 */
export const GuardPoolTake = request(
  'guard/poolTake',
  () => z
    .object({
      spec: poolSpecSchema,
      size: z.number().int().min(0).max(32),
      name: instanceName().optional(),
      adopt: adoption().optional(),
      /**
       * An ephemeral `coi run`: the guard deletes the taken sandbox when this
       * connection closes (the command ended, or the coi process died), so
       * `coi run` returns with the command and nothing is left behind.
       */
      endWithClient: z.boolean().optional(),
    })
    .strict(),
  () => z.object({ taken: z.boolean(), reason: z.string().optional(), mode: z.string().optional(), warnings: z.array(z.string()).optional() }),
);

/** Forgets the demand of pools (all of a prefix) and deletes their members nobody took. */
export const GuardPoolDrain = request(
  'guard/poolDrain',
  () => z.object({ prefix: z.string().regex(/^[a-z][a-z0-9-]{0,20}$/).optional() }).strict(),
  () => z.object({ deleted: z.array(z.string()) }),
);

export const GuardPoolStatus = request(
  'guard/poolStatus',
  () => z.object({}).strict(),
  () => z.object({
    pools: z.array(z.object({ key: z.string(), workspaceHash: z.string(), image: z.string(), size: z.number().int(), idle: z.array(z.string()), filling: z.array(z.string()) })),
    limits: z.object({ maxMembers: z.number().int(), minFreeMiB: z.number().int() }),
    problems: z.array(z.string()),
  }),
);
