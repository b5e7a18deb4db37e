/**
 * Every JSON-RPC method and notification of COI, in one place, each with the zod
 * schemas of its params and result. The extension, the helper and the guard all
 * import these constants; nothing else names a method string.
 *
 * Namespaces: `helper/…` (the user's helper), `guard/…` (the root guard),
 * `$/…` notifications pushed to clients.
 */
import { z } from 'zod';
import { healthReport } from '../health/schema';
import { once } from '../lazy';
import { notification, request } from './rpc';

/** Params of a method that takes none: `{}` or omitted, and nothing else. */
const noParams = once(() => z.object({}).strict());

export const versionInfo = once(() =>
  z.object({
  version: z.string(),
  pid: z.number().int(),
  node: z.string(),
  /** A hash of the running bundle: tells builds of the same version apart. */
  build: z.string().max(64).optional(),
})
);
export type VersionInfo = z.infer<ReturnType<typeof versionInfo>>;

export const incusStatus = once(() =>
  z.discriminatedUnion('reachable', [
  z.object({ reachable: z.literal(true), serverVersion: z.string(), apiVersion: z.string(), endpoint: z.string() }),
  z.object({ reachable: z.literal(false), endpoint: z.string(), error: z.string(), remedy: z.string().optional() }),
])
);
export type IncusStatus = z.infer<ReturnType<typeof incusStatus>>;

export const guardStatus = once(() =>
  z.discriminatedUnion('reachable', [
  z.object({ reachable: z.literal(true), version: z.string(), pid: z.number().int(), socket: z.string() }),
  z.object({ reachable: z.literal(false), socket: z.string(), error: z.string() }),
])
);
export type GuardStatus = z.infer<ReturnType<typeof guardStatus>>;

// ── helper ──────────────────────────────────────────────────────────────────

export const HelperInfo = request(
  'helper/info',
  () => noParams(),
  () => z.object({ helper: versionInfo(), incus: incusStatus(), guard: guardStatus() }),
);
export type HelperInfoResult = z.infer<typeof HelperInfo.result>;

// ── guard ───────────────────────────────────────────────────────────────────

export const GuardInfo = request(
  'guard/info',
  () => noParams(),
  () => z.object({
    guard: versionInfo(),
    startedAt: z.string(),
    socket: z.string(),
    clients: z.number().int(),
    subscriptions: z.number().int(),
    incus: incusStatus(),
    eventsConnected: z.boolean(),
    /** Holds the host lock: reaps ended sandboxes, enforces deadlines. */
    primary: z.boolean(),
    /**
     * What this guard does besides relaying events, e.g. "network" (it fences
     * sandboxes' networks: guard/secureSandbox). Absent from older guards.
     */
    capabilities: z.array(z.string().max(64)).max(64).default([]),
  }),
);
export type GuardInfoResult = z.infer<typeof GuardInfo.result>;

/** Capability names in guard/info. */
export const GUARD_CAPABILITIES = { network: 'network' } as const;

export const eventTopic = once(() => z.enum(['incus', 'guard', 'network', 'threat']));
export type EventTopic = z.infer<ReturnType<typeof eventTopic>>;

export const GuardSubscribe = request(
  'guard/subscribe',
  () => z.object({ topics: z.array(eventTopic()).min(1).max(8) }).strict(),
  () => z.object({ topics: z.array(eventTopic()) }),
);

export const GuardShutdown = request('guard/shutdown', () => noParams(), () => z.object({ stopping: z.literal(true) }));

/** An Incus event as the guard relays it: trimmed to what clients use, never raw. */
export const incusEvent = once(() =>
  z.object({
  type: z.string().max(64),
  timestamp: z.string().max(64),
  /** For lifecycle events: e.g. "instance-started"; for operations: the operation's description. */
  action: z.string().max(256),
  /** The source URL, e.g. /1.0/instances/coi-1a2b3c4d-1. */
  source: z.string().max(1024),
  project: z.string().max(256).optional(),
})
);
export type IncusEvent = z.infer<ReturnType<typeof incusEvent>>;

/**
 * A connection our rules refused or dropped, from the kernel log line of the
 * rule (so attributed by the sandbox's host-side interface, never by the
 * packet's source address). Fields other than container, rule and action are
 * absent for frames that are not IP (rule "vlan" or "l2").
 */
export const networkEvent = once(() =>
  z.object({
  container: z.string().max(128),
  /** private, linklocal, cgnat, loopback, multicast, reserved, host, dns, notallowed, ipv6, vlan, l2, boot */
  rule: z.string().max(32),
  action: z.enum(['drop', 'reject']),
  src: z.string().max(64).optional(),
  dst: z.string().max(64).optional(),
  /** tcp, udp, icmp, icmpv6, … */
  proto: z.string().max(16).optional(),
  dport: z.number().int().min(0).max(65535).optional(),
  /** When the guard read the line (ISO 8601). */
  time: z.string().max(64),
})
);
export type NetworkEvent = z.infer<ReturnType<typeof networkEvent>>;

// ── monitor: threats ────────────────────────────────────────────────────────
//
// A threat as the audit log holds it (one JSON line) and as the guard pushes
// it on the `threat` topic the moment it acted. Every string in `evidence`
// came from inside the container: render it as text, never as markup or
// terminal control. Descriptions are already made display-safe.

export const threatLevel = once(() => z.enum(['info', 'warning', 'high', 'critical']));
export type ThreatLevel = z.infer<ReturnType<typeof threatLevel>>;

const lineageEntry = once(() => z.object({ pid: z.number().int(), comm: z.string(), argv: z.array(z.string()) }));

export const threatEvidence = once(() =>
  z
    .object({
      process: z
        .object({
          pid: z.number().int(),
          nsPid: z.number().int().optional(),
          comm: z.string(),
          exe: z.string().optional(),
          argv: z.array(z.string()),
          uid: z.number().int().optional(),
          /** The process, its parent, … up to the container's init. */
          lineage: z.array(lineageEntry()),
        })
        .passthrough()
        .optional(),
      network: z
        .object({ proto: z.enum(['tcp', 'udp']), remote: z.string(), port: z.number().int(), local: z.string(), state: z.string().optional(), fds: z.array(z.number().int()).optional() })
        .passthrough()
        .optional(),
      filesystem: z.record(z.string(), z.unknown()).optional(),
      processCount: z.record(z.string(), z.unknown()).optional(),
      dns: z.record(z.string(), z.unknown()).optional(),
      /** The rule that matched, e.g. "reverse-shell/shell-stdio-network". */
      rule: z.string(),
      key: z.string(),
    })
    .passthrough()
);

/** What the guard did about it, when, and how fast. */
export const threatResponse = once(() =>
  z
    .object({
      /** When the snapshot that showed it was taken (ISO 8601). */
      detectedAt: z.string(),
      /** When the cgroup freezer was written (ISO 8601): from then on nothing in the container ran. */
      frozenAt: z.string().optional(),
      /** Milliseconds from the snapshot to the freeze. */
      containMs: z.number().optional(),
      error: z.string().optional(),
    })
    .passthrough()
);

export const threatRecord = once(() =>
  z
    .object({
      id: z.string().max(64),
      timestamp: z.string().max(64),
      level: threatLevel(),
      category: z.string().max(64),
      title: z.string().max(1024),
      description: z.string().max(16_384),
      evidence: threatEvidence(),
      /** logged | alerted | paused | killed | logged (already paused) | pause failed | kill failed */
      action: z.string().max(64),
      container: z.string().max(128),
      detector: z.string().max(64).optional(),
      mitre: z.array(z.string().max(32)).max(16).optional(),
      /** Identical events folded into this one (de-duplication window 30 s). */
      folded: z.number().int().optional(),
      response: threatResponse().optional(),
    })
    .passthrough()
);
export type ThreatRecord = z.infer<ReturnType<typeof threatRecord>>;

export const threatEvent = once(() =>
  z.object({
  container: z.string().max(128),
  ownerUid: z.number().int().optional(),
  /** The audit file the record is in. */
  auditPath: z.string().max(4096).optional(),
  record: threatRecord(),
})
);
export type ThreatEventWire = z.infer<ReturnType<typeof threatEvent>>;

export const guardEvent = once(() =>
  z.discriminatedUnion('topic', [
  z.object({ topic: z.literal('incus'), event: incusEvent() }),
  z.object({ topic: z.literal('network'), event: networkEvent() }),
  z.object({
    topic: z.literal('guard'),
    event: z.object({
      kind: z.enum(['started', 'stopping', 'events-connected', 'events-lost', 'limit-warning', 'limit-stopped']),
      message: z.string().max(1024),
      container: z.string().max(128).optional(),
    }),
  }),
  z.object({ topic: z.literal('threat'), event: threatEvent() }),
])
);
export type GuardEvent = z.infer<ReturnType<typeof guardEvent>>;

/** Pushed by the guard to every client subscribed to the event's topic. */
export const GuardEventNotification = notification('$/guard/event', () => guardEvent());

/**
 * Every threat the guard pushes, forwarded by the helper to its client (the
 * extension) the moment it arrives: the notifications, the alert view and the
 * tree's counts are made from these.
 */
export const ThreatNotification = notification('$/threat', () => threatEvent());

/**
 * Delegates a user's own uid and gid to root in /etc/subuid and /etc/subgid, so
 * their workspace can be mapped with raw.idmap. Only for the caller's own ids.
 */
export const GuardAllowIdmap = request(
  'guard/allowIdmap',
  () => z.object({ uid: z.number().int().min(0).max(4_294_967_294), gid: z.number().int().min(0).max(4_294_967_294) }).strict(),
  () => z.object({ changed: z.boolean() }),
);

const instanceName = once(() => z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/, 'an instance name (letters, digits and "-")'));

/**
 * Fences a sandbox's network before it starts. The guard reads the instance
 * from Incus (its labels, its NIC), checks it is a COI sandbox, recomputes the
 * rules of every sandbox and applies them in one transaction; it answers only
 * once they are in place. Nothing in the params but the name: what the
 * sandbox may reach comes from its instance, not from the caller.
 */
export const GuardSecureSandbox = request(
  'guard/secureSandbox',
  () => z.object({ name: instanceName() }).strict(),
  () => z.object({
    name: z.string(),
    mode: z.enum(['restricted', 'allowlist', 'open']),
    hostIface: z.string(),
    /** allowlist: the names resolved and their addresses now allowed. */
    resolved: z.array(z.object({ name: z.string(), ips: z.array(z.string()), error: z.string().optional() })),
    warnings: z.array(z.string()),
  }),
);
export type GuardSecureSandboxResult = z.infer<typeof GuardSecureSandbox.result>;

const ruleSummary = once(() =>
  z.object({
  container: z.string(),
  hostIface: z.string().optional(),
  mode: z.string().optional(),
  /** "firewalld": firewalld's zone and policy decide; the guard's rules only count. */
  backend: z.literal('firewalld').optional(),
  bootBlocked: z.boolean(),
  packets: z.number().optional(),
  bytes: z.number().optional(),
})
);

const applyReport = once(() => z.object({ at: z.string(), ok: z.boolean(), error: z.string().optional(), reason: z.string(), reasons: z.array(z.string()).optional() }));

/** What the guard enforces now: installed rules, what it would not fence, and orphans. */
export const GuardNetworkStatus = request(
  'guard/networkStatus',
  () => noParams(),
  () => z.object({
    tables: z.array(z.string()),
    installed: z.array(ruleSummary()),
    /** Rules of instances that no longer exist (removed by the next apply, or by coi clean --orphans). */
    orphans: z.array(z.string()),
    problems: z.array(z.object({ container: z.string(), problem: z.string() })),
    lastApply: applyReport().optional(),
    /** The last applies, oldest first, each with every request it served (a deletion event, a launch's secure, …). */
    recentApplies: z.array(applyReport()).optional(),
    /** Requests waiting for the next apply (one is running). */
    pending: z.array(z.string()).optional(),
  }),
);
export type GuardNetworkStatusResult = z.infer<typeof GuardNetworkStatus.result>;

/** Removes rules (and allowlist caches) of sandboxes that no longer exist. */
export const GuardCleanOrphans = request(
  'guard/cleanOrphans',
  () => z.object({ dryRun: z.boolean().default(false) }).strict(),
  () => z.object({ removed: z.array(z.object({ container: z.string(), objects: z.array(z.string()) })), caches: z.array(z.string()) }),
);

// ── sandboxes ───────────────────────────────────────────────────────────────

export const sandboxInfo = once(() =>
  z.object({
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
  monitored: z.boolean().optional(),
})
);
export type SandboxInfoWire = z.infer<ReturnType<typeof sandboxInfo>>;

const sandboxName = once(() => z.string().min(1).max(63).regex(/^[a-z0-9][a-z0-9-]*$/, 'a sandbox name (lowercase letters, digits and "-")'));

export const SandboxList = request('sandbox/list', () => noParams(), () => z.object({ sandboxes: z.array(sandboxInfo()) }));

export const SandboxOpen = request(
  'sandbox/open',
  () => z
    .object({
      workspace: z.string().min(1).max(4096),
      slot: z.number().int().min(1).max(10).optional(),
      tool: z.string().max(64).optional(),
      image: z.string().max(256).optional(),
      persistent: z.boolean().optional(),
      profile: z.string().max(64).optional(),
    })
    .strict(),
  () => z.object({ sandbox: sandboxInfo(), warnings: z.array(z.string()) }),
);

export const SandboxShutdown = request('sandbox/shutdown', () => z.object({ name: sandboxName() }).strict(), () => z.object({ outcome: z.enum(['deleted', 'stopped']) }));
export const SandboxKill = request('sandbox/kill', () => z.object({ name: sandboxName() }).strict(), () => z.object({ killed: z.literal(true) }));
export const SandboxPersist = request('sandbox/persist', () => z.object({ name: sandboxName() }).strict(), () => z.object({ sandbox: sandboxInfo() }));
export const SandboxResume = request('sandbox/resume', () => z.object({ name: sandboxName() }).strict(), () => z.object({ sandbox: sandboxInfo() }));
export const SandboxClean = request(
  'sandbox/clean',
  () => z.object({ dryRun: z.boolean().default(false) }).strict(),
  () => z.object({ removed: z.array(z.object({ name: z.string(), reason: z.string() })) }),
);

/** A sandbox appeared, changed state or went away (sandbox null), from Incus events. */
export const SandboxChanged = notification(
  '$/sandbox/changed',
  () => z.object({ name: z.string(), action: z.string(), sandbox: sandboxInfo().nullable() }),
);

/**
 * What "Open Workspace in COI Sandbox" offers for one workspace: the tools and
 * profiles, and what its configuration would pick without a choice.
 */
export const SandboxOptions = request(
  'sandbox/options',
  () => z.object({ workspace: z.string().min(1).max(4096) }).strict(),
  () => z.object({
    tools: z.array(z.object({ name: z.string(), description: z.string() })),
    profiles: z.array(z.object({ name: z.string(), scope: z.string(), description: z.string().optional() })),
    defaults: z.object({ tool: z.string(), persistent: z.boolean(), profile: z.string().optional() }),
  }),
);
export type SandboxOptionsResult = z.infer<typeof SandboxOptions.result>;

// ── snapshots ───────────────────────────────────────────────────────────────

export const SnapshotList = request('snapshot/list', () => z.object({ name: sandboxName() }).strict(), () => z.object({ snapshots: z.array(z.object({ name: z.string(), createdAt: z.string(), stateful: z.boolean() })) }));

const snapshotName = once(() => z.string().min(1).max(63).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a snapshot name (letters, digits, ".", "_" and "-")'));
const snapshotSummary = once(() => z.object({ name: z.string(), createdAt: z.string(), stateful: z.boolean() }));
export type SnapshotInfoWire = z.infer<ReturnType<typeof snapshotSummary>>;

/** Takes a snapshot; without `snapshot`, named snap-YYYYMMDD-HHMMSS. */
export const SnapshotCreate = request('snapshot/create', () => z.object({ name: sandboxName(), snapshot: snapshotName().optional() }).strict(), () => z.object({ snapshot: snapshotSummary() }));

/** What a restore throws away and keeps, and whether it will go ahead: for the confirmation dialog. */
export const restorePlan = once(() =>
  z.object({
  sandbox: z.string(),
  snapshot: z.string(),
  snapshotCreatedAt: z.string(),
  refused: z.object({ reason: z.string(), remedy: z.object({ title: z.string(), shell: z.string().optional(), command: z.string().optional() }).optional() }).optional(),
  restart: z.boolean(),
  lost: z.array(z.string()),
  kept: z.array(z.string()),
})
);
export type RestorePlanWire = z.infer<ReturnType<typeof restorePlan>>;

/**
 * Restores a sandbox to a snapshot. With `dryRun` only the plan is returned
 * (ask the user with it, then call again without). A running sandbox is
 * stopped, restored and started again with its tool; a refused plan is an error.
 */
export const SnapshotRestore = request(
  'snapshot/restore',
  () => z.object({ name: sandboxName(), snapshot: snapshotName(), dryRun: z.boolean().default(false) }).strict(),
  () => z.object({ plan: restorePlan(), restored: z.boolean(), restarted: z.boolean(), sandbox: sandboxInfo() }),
);

export const SnapshotDelete = request(
  'snapshot/delete',
  () => z
    .object({ name: sandboxName(), snapshot: snapshotName().optional(), all: z.boolean().default(false) })
    .strict()
    .refine((p) => p.all !== (p.snapshot !== undefined), { message: 'give either snapshot or all: true' }),
  () => z.object({ deleted: z.array(z.string()) }),
);

/** Starts a new slot of the sandbox's workspace from one of its snapshots. */
export const SnapshotBranch = request('snapshot/branch', () => z.object({ name: sandboxName(), snapshot: snapshotName() }).strict(), () => z.object({ sandbox: sandboxInfo(), warnings: z.array(z.string()) }));
// ── monitor: methods ────────────────────────────────────────────────────────

const containerName = once(() => z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9-]*$/, 'a container name (letters, digits and "-")'));

/** The audit log of a sandbox (also of one already deleted), read by the helper as its user. */
export const AuditRead = request(
  'audit/read',
  () => z.object({ container: containerName(), limit: z.number().int().min(1).max(100_000).optional(), minLevel: threatLevel().optional() }).strict(),
  () => z.object({ container: z.string(), files: z.array(z.string()), records: z.array(threatRecord()), skipped: z.number().int() }),
);

/**
 * The newest audit events of every sandbox whose log the helper's user can
 * read (of this prefix), newest last: the alert view's history before the
 * live `$/threat` pushes.
 */
export const AuditRecent = request(
  'audit/recent',
  () => z.object({ limit: z.number().int().min(1).max(5_000).optional(), minLevel: threatLevel().optional() }).strict(),
  () => z.object({ events: z.array(threatEvent()), skipped: z.number().int() }),
);

/** Where one audit event's raw line is (1-based), for "open the audit line". */
export const AuditLocate = request(
  'audit/locate',
  () => z.object({ container: containerName(), id: z.string().min(1).max(64) }).strict(),
  () => z.object({ path: z.string(), line: z.number().int().min(1) }),
);

export const monitorProcess = once(() =>
  z.object({
  pid: z.number().int(),
  nsPid: z.number().int().optional(),
  ppid: z.number().int(),
  uid: z.number().int(),
  comm: z.string(),
  argv: z.array(z.string()),
  state: z.string().optional(),
  /** What fds 0, 1 and 2 point at: a path, pipe:[…], socket:[…] (with its peer when it is inet). */
  stdio: z.array(z.string()),
})
);

export const monitorConnection = once(() =>
  z.object({
  proto: z.enum(['tcp', 'udp']),
  local: z.string(),
  remote: z.string(),
  state: z.string(),
  pid: z.number().int().optional(),
  comm: z.string().optional(),
})
);

export const monitorStatus = once(() =>
  z.object({
  container: z.string(),
  /** watching: running and polled; frozen: paused by the guard or Incus; killing: a CRITICAL response in progress; unmonitored: a one-shot look. */
  state: z.enum(['watching', 'frozen', 'killing', 'waiting', 'unmonitored']),
  ownerUid: z.number().int().optional(),
  policy: z
    .object({
      pauseOnHigh: z.boolean(),
      killOnCritical: z.boolean(),
      forensicsOnKill: z.boolean(),
      retentionDays: z.number().int(),
      thresholds: z.record(z.string(), z.unknown()),
    })
    .optional(),
  auditPath: z.string().optional(),
  startedAt: z.string().optional(),
  polls: z.number().int(),
  peeks: z.number().int(),
  lastPollMs: z.number(),
  processCount: z.number().int().optional(),
  processes: z.array(monitorProcess()).optional(),
  connections: z.array(monitorConnection()).optional(),
  /** The latest threats the guard recorded for it (newest last). */
  threats: z.array(threatRecord()),
})
);
export type MonitorStatus = z.infer<ReturnType<typeof monitorStatus>>;

/** What the guard watches; with a container, its processes, connections and threats now. */
export const MonitorSnapshot = request(
  'monitor/snapshot',
  () => z.object({ container: containerName().optional() }).strict(),
  () => z.object({
    execEvents: z.object({ available: z.boolean(), reason: z.string().optional(), events: z.number().int() }),
    monitors: z.array(monitorStatus()),
  }),
);

// ── images ──────────────────────────────────────────────────────────────────

const imageName = once(() => z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'an image alias (letters, digits, ".", "_" and "-")'));

/**
 * Starts a build and answers at once with its id; progress arrives as
 * `$/build/progress`, the outcome as `$/build/finished`. `default` builds the
 * agent image `coi` from the workspace's configuration (profile's
 * `[container.build]` included); `custom` a derived image from a script.
 */
export const BuildStart = request(
  'build/start',
  () => z.discriminatedUnion('kind', [
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
        name: imageName(),
        base: imageName().or(z.string().max(256).regex(/^[a-z][a-z0-9-]*:[A-Za-z0-9._/-]+$/)).optional(),
        /** Path of the script on the helper's host. */
        script: z.string().min(1).max(4096).optional(),
        commands: z.array(z.string().max(8192)).max(100).optional(),
        force: z.boolean().optional(),
        compression: z.enum(['none', 'gzip', 'xz']).optional(),
        keep: z.number().int().min(1).max(100).optional(),
      })
      .strict(),
  ]),
  () => z.object({ buildId: z.string(), log: z.string() }),
);

export const BuildCancel = request('build/cancel', () => z.object({ buildId: z.string().min(1).max(64) }).strict(), () => z.object({ cancelled: z.boolean() }));

/** A step began (title set) or a log line of the current step (line set). */
export const BuildProgress = notification(
  '$/build/progress',
  () => z.object({ buildId: z.string(), step: z.string().max(64), title: z.string().max(1024).optional(), line: z.string().max(8192).optional() }),
);

export const buildResult = once(() =>
  z.object({
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
})
);

/** The build ended: with a result, or with an error that names the failed step (cancelled: code CANCELLED). */
export const BuildFinished = notification(
  '$/build/finished',
  () => z.object({
    buildId: z.string(),
    ok: z.boolean(),
    result: buildResult().optional(),
    error: z.object({ code: z.string(), message: z.string(), step: z.string().optional(), log: z.string().optional() }).optional(),
  }),
);

export const imageSummary = once(() =>
  z.object({
  fingerprint: z.string(),
  aliases: z.array(z.string()),
  description: z.string(),
  sizeBytes: z.number(),
  createdAt: z.string(),
  kind: z.string(),
  tools: z.record(z.string(), z.string()),
  properties: z.record(z.string(), z.string()),
})
);

export const ImageList = request('image/list', () => z.object({ all: z.boolean().default(false) }).strict(), () => z.object({ images: z.array(imageSummary()) }));
export const ImageInfo = request('image/info', () => z.object({ name: z.string().min(1).max(64) }).strict(), () => z.object({ image: imageSummary() }));
export const ImageDelete = request('image/delete', () => z.object({ name: z.string().min(1).max(64) }).strict(), () => z.object({ aliases: z.array(z.string()), images: z.array(z.string()) }));

// ── health ──────────────────────────────────────────────────────────────────

/**
 * `coi health` for the editor: the same checks and report as
 * `coi health --format json` (helper/health/schema.ts), for the workspace's
 * configuration. `live` also launches a temporary sandbox (a few seconds).
 * Fixes are not applied here: each check's remedy says how, and the editor
 * offers it as a button.
 */
export const HealthCheck = request(
  'health/check',
  () => z.object({ workspace: z.string().min(1).max(4096).optional(), live: z.boolean().default(true) }).strict(),
  () => z.object({ report: healthReport() }),
);
export type HealthCheckResult = z.infer<typeof HealthCheck.result>;
