/**
 * Every JSON-RPC method and notification of COI, in one place, each with the zod
 * schemas of its params and result. The extension, the helper and the guard all
 * import these constants; nothing else names a method string.
 *
 * Namespaces: `helper/…` (the user's helper), `guard/…` (the root guard),
 * `$/…` notifications pushed to clients.
 */
import { z } from 'zod';
import { notification, request } from './rpc';

/** Params of a method that takes none: `{}` or omitted, and nothing else. */
const noParams = z.object({}).strict();

export const versionInfo = z.object({
  version: z.string(),
  pid: z.number().int(),
  node: z.string(),
});
export type VersionInfo = z.infer<typeof versionInfo>;

export const incusStatus = z.discriminatedUnion('reachable', [
  z.object({ reachable: z.literal(true), serverVersion: z.string(), apiVersion: z.string(), endpoint: z.string() }),
  z.object({ reachable: z.literal(false), endpoint: z.string(), error: z.string(), remedy: z.string().optional() }),
]);
export type IncusStatus = z.infer<typeof incusStatus>;

export const guardStatus = z.discriminatedUnion('reachable', [
  z.object({ reachable: z.literal(true), version: z.string(), pid: z.number().int(), socket: z.string() }),
  z.object({ reachable: z.literal(false), socket: z.string(), error: z.string() }),
]);
export type GuardStatus = z.infer<typeof guardStatus>;

// ── helper ──────────────────────────────────────────────────────────────────

export const HelperInfo = request(
  'helper/info',
  noParams,
  z.object({ helper: versionInfo, incus: incusStatus, guard: guardStatus }),
);
export type HelperInfoResult = z.infer<typeof HelperInfo.result>;

// ── guard ───────────────────────────────────────────────────────────────────

export const GuardInfo = request(
  'guard/info',
  noParams,
  z.object({
    guard: versionInfo,
    startedAt: z.string(),
    socket: z.string(),
    clients: z.number().int(),
    subscriptions: z.number().int(),
    incus: incusStatus,
    eventsConnected: z.boolean(),
  }),
);
export type GuardInfoResult = z.infer<typeof GuardInfo.result>;

export const eventTopic = z.enum(['incus', 'guard']);
export type EventTopic = z.infer<typeof eventTopic>;

export const GuardSubscribe = request(
  'guard/subscribe',
  z.object({ topics: z.array(eventTopic).min(1).max(8) }).strict(),
  z.object({ topics: z.array(eventTopic) }),
);

export const GuardShutdown = request('guard/shutdown', noParams, z.object({ stopping: z.literal(true) }));

/** An Incus event as the guard relays it: trimmed to what clients use, never raw. */
export const incusEvent = z.object({
  type: z.string().max(64),
  timestamp: z.string().max(64),
  /** For lifecycle events: e.g. "instance-started"; for operations: the operation's description. */
  action: z.string().max(256),
  /** The source URL, e.g. /1.0/instances/coi-1a2b3c4d-1. */
  source: z.string().max(1024),
  project: z.string().max(256).optional(),
});
export type IncusEvent = z.infer<typeof incusEvent>;

export const guardEvent = z.discriminatedUnion('topic', [
  z.object({ topic: z.literal('incus'), event: incusEvent }),
  z.object({ topic: z.literal('guard'), event: z.object({ kind: z.enum(['started', 'stopping', 'events-connected', 'events-lost']), message: z.string().max(1024) }) }),
]);
export type GuardEvent = z.infer<typeof guardEvent>;

/** Pushed by the guard to every client subscribed to the event's topic. */
export const GuardEventNotification = notification('$/guard/event', guardEvent);

/**
 * Delegates a user's own uid and gid to root in /etc/subuid and /etc/subgid, so
 * their workspace can be mapped with raw.idmap. Only for the caller's own ids.
 */
export const GuardAllowIdmap = request(
  'guard/allowIdmap',
  z.object({ uid: z.number().int().min(0).max(4_294_967_294), gid: z.number().int().min(0).max(4_294_967_294) }).strict(),
  z.object({ changed: z.boolean() }),
);

// ── sandboxes ───────────────────────────────────────────────────────────────

export const sandboxInfo = z.object({
  name: z.string(),
  workspace: z.string(),
  slot: z.number().int(),
  kind: z.enum(['shell', 'run']),
  state: z.enum(['running', 'frozen', 'stopped', 'starting', 'stopping', 'error']),
  tool: z.string(),
  persistent: z.boolean(),
  session: z.string(),
  profile: z.string(),
  phase: z.enum(['creating', 'ready']),
  address: z.string().optional(),
  createdAt: z.string(),
  image: z.string(),
  ownerUid: z.number().int().optional(),
  launcherPid: z.number().int().optional(),
});
export type SandboxInfoWire = z.infer<typeof sandboxInfo>;

const sandboxName = z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9-]*$/, 'a sandbox name (lowercase letters, digits and "-")');

export const SandboxList = request('sandbox/list', noParams, z.object({ sandboxes: z.array(sandboxInfo) }));

export const SandboxOpen = request(
  'sandbox/open',
  z
    .object({
      workspace: z.string().min(1).max(4096),
      slot: z.number().int().min(1).max(10).optional(),
      tool: z.string().max(64).optional(),
      image: z.string().max(256).optional(),
      persistent: z.boolean().optional(),
      profile: z.string().max(64).optional(),
    })
    .strict(),
  z.object({ sandbox: sandboxInfo, warnings: z.array(z.string()) }),
);

export const SandboxShutdown = request('sandbox/shutdown', z.object({ name: sandboxName }).strict(), z.object({ outcome: z.enum(['deleted', 'stopped']) }));
export const SandboxKill = request('sandbox/kill', z.object({ name: sandboxName }).strict(), z.object({ killed: z.literal(true) }));
export const SandboxPersist = request('sandbox/persist', z.object({ name: sandboxName }).strict(), z.object({ sandbox: sandboxInfo }));
export const SandboxResume = request('sandbox/resume', z.object({ name: sandboxName }).strict(), z.object({ sandbox: sandboxInfo }));
export const SandboxClean = request(
  'sandbox/clean',
  z.object({ dryRun: z.boolean().default(false) }).strict(),
  z.object({ removed: z.array(z.object({ name: z.string(), reason: z.string() })) }),
);

/** A sandbox appeared, changed state or went away (sandbox null), from Incus events. */
export const SandboxChanged = notification(
  '$/sandbox/changed',
  z.object({ name: z.string(), action: z.string(), sandbox: sandboxInfo.nullable() }),
);

// ── images ──────────────────────────────────────────────────────────────────

const imageName = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'an image alias (letters, digits, ".", "_" and "-")');

/**
 * Starts a build and answers at once with its id; progress arrives as
 * `$/build/progress`, the outcome as `$/build/finished`. `default` builds the
 * agent image `coi` from the workspace's configuration (profile's
 * `[container.build]` included); `custom` a derived image from a script.
 */
export const BuildStart = request(
  'build/start',
  z.discriminatedUnion('kind', [
    z
      .object({
        kind: z.literal('default'),
        workspace: z.string().min(1).max(4096),
        profile: z.string().max(64).optional(),
        force: z.boolean().optional(),
        compression: z.enum(['none', 'gzip', 'xz']).optional(),
        mode: z.enum(['offline', 'online']).optional(),
        keep: z.number().int().min(1).max(100).optional(),
      })
      .strict(),
    z
      .object({
        kind: z.literal('custom'),
        name: imageName,
        base: imageName.or(z.string().max(256).regex(/^[a-z][a-z0-9-]*:[A-Za-z0-9._/-]+$/)).optional(),
        /** Path of the script on the helper's host. */
        script: z.string().min(1).max(4096).optional(),
        commands: z.array(z.string().max(8192)).max(100).optional(),
        force: z.boolean().optional(),
        compression: z.enum(['none', 'gzip', 'xz']).optional(),
        keep: z.number().int().min(1).max(100).optional(),
      })
      .strict(),
  ]),
  z.object({ buildId: z.string(), log: z.string() }),
);

export const BuildCancel = request('build/cancel', z.object({ buildId: z.string().min(1).max(64) }).strict(), z.object({ cancelled: z.boolean() }));

/** A step began (title set) or a log line of the current step (line set). */
export const BuildProgress = notification(
  '$/build/progress',
  z.object({ buildId: z.string(), step: z.string().max(64), title: z.string().max(1024).optional(), line: z.string().max(8192).optional() }),
);

export const buildResult = z.object({
  buildId: z.string(),
  name: z.string(),
  fingerprint: z.string(),
  versionAlias: z.string().optional(),
  outcome: z.enum(['built', 'from-cache', 'up-to-date']),
  mode: z.enum(['offline', 'online']).optional(),
  sizeBytes: z.number(),
  seconds: z.number(),
  log: z.string(),
  tools: z.record(z.string(), z.string()),
  pruned: z.array(z.string()),
});

/** The build ended: with a result, or with an error that names the failed step (cancelled: code CANCELLED). */
export const BuildFinished = notification(
  '$/build/finished',
  z.object({
    buildId: z.string(),
    ok: z.boolean(),
    result: buildResult.optional(),
    error: z.object({ code: z.string(), message: z.string(), step: z.string().optional(), log: z.string().optional() }).optional(),
  }),
);

export const imageSummary = z.object({
  fingerprint: z.string(),
  aliases: z.array(z.string()),
  description: z.string(),
  sizeBytes: z.number(),
  createdAt: z.string(),
  kind: z.string(),
  tools: z.record(z.string(), z.string()),
  properties: z.record(z.string(), z.string()),
});

export const ImageList = request('image/list', z.object({ all: z.boolean().default(false) }).strict(), z.object({ images: z.array(imageSummary) }));
export const ImageInfo = request('image/info', z.object({ name: z.string().min(1).max(64) }).strict(), z.object({ image: imageSummary }));
export const ImageDelete = request('image/delete', z.object({ name: z.string().min(1).max(64) }).strict(), z.object({ aliases: z.array(z.string()), images: z.array(z.string()) }));
