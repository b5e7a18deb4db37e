/**
 * Threat alerts as plain data, shared by the extension and the alert webview
 * (no vscode, no DOM): what an event says in one line, which actions apply
 * to it, how a burst folds into one notification, and the store of events
 * with each sandbox's unseen count.
 *
 * Every string of an event that came from inside a container (process names,
 * command lines, file and domain names) goes through `visible` before a
 * person sees it: control characters (ANSI escapes, bidi overrides, newlines)
 * become \xNN / \uNNNN, so they show as exactly those characters and drive
 * nothing. HTML is never interpreted anywhere (the webview sets textContent).
 */
import type { ThreatEventWire, ThreatLevel, ThreatRecord } from '../../helper/protocol/methods';

export type AlertEvent = ThreatEventWire;
export type Level = ThreatLevel;

export const LEVEL_ORDER: Record<Level, number> = { info: 0, warning: 1, high: 2, critical: 3 };
export const LEVELS: readonly Level[] = ['info', 'warning', 'high', 'critical'];

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Container-controlled text as inert characters: control characters shown as escapes, capped. */
export function visible(text: unknown, max = 4_000): string {
  const s = typeof text === 'string' ? text : text === undefined || text === null ? '' : String(text);
  const cut = s.length > max ? `${s.slice(0, max)}…` : s;
  return cut.replace(CONTROL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * For a VS Code notification, whose message turns `[text](command:…)` into a
 * link: a process named like one must not become a button. Breaking the `](`
 * pair keeps every character readable.
 */
export function notificationSafe(text: string, max = 300): string {
  return visible(text, max).replace(/\]\(/g, '] (');
}

/** "killed", "froze", "saw in" — what the guard did, as a verb before the container's name. */
export function actionVerb(action: string): string {
  switch (action) {
    case 'killed':
      return 'killed';
    case 'paused':
      return 'froze';
    case 'logged (already paused)':
      return 'kept frozen';
    case 'pause failed':
      return 'could not freeze';
    case 'kill failed':
      return 'could not kill';
    default:
      return 'saw in';
  }
}

/** What the guard did, as a sentence for the alert view. */
export function actionSentence(action: string): string {
  switch (action) {
    case 'killed':
      return 'The guard killed the sandbox.';
    case 'paused':
      return 'The guard froze the sandbox.';
    case 'logged (already paused)':
      return 'The sandbox was already frozen.';
    case 'pause failed':
      return 'The guard could not freeze the sandbox.';
    case 'kill failed':
      return 'The guard could not kill the sandbox; it stays frozen.';
    case 'alerted':
      return 'Alerted; nothing was stopped.';
    default:
      return `Logged (${visible(action, 64)}).`;
  }
}

const STREAMS = ['stdin', 'stdout', 'stderr'];

function joinWords(words: string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/** The remote end of the event's connection, "198.51.100.2:4444", if it has one. */
export function remoteOf(r: ThreatRecord): string | undefined {
  const n = r.evidence.network;
  if (!n || !n.remote) return undefined;
  return `${visible(n.remote, 80)}:${n.port}`;
}

/**
 * What was seen, in one line: "sh with its stdin, stdout and stderr on a
 * socket to 198.51.100.2:4444", "cat: Reading other processes' environments".
 */
export function whatWasSeen(r: ThreatRecord): string {
  const p = r.evidence.process;
  const who = p ? visible(p.comm, 64) : undefined;
  const remote = remoteOf(r);
  const fds = (r.evidence.network?.fds ?? []).filter((f) => f >= 0 && f <= 2);
  if (who && remote && fds.length) return `${who} with its ${joinWords(fds.map((f) => STREAMS[f]!))} on a socket to ${remote}`;
  if (who && remote) return `${who} — ${visible(r.title, 200)} (${remote})`;
  if (who) return `${who} — ${visible(r.title, 200)}`;
  return visible(r.title, 200);
}

/** "froze coi-1a2b3c4d-1: sh with its stdin on a socket to 10.99.0.2:4444" */
export function describeAlert(e: AlertEvent): string {
  return `${actionVerb(e.record.action)} ${visible(e.container, 128)}: ${whatWasSeen(e.record)}`;
}

export type AlertAction = 'resume' | 'kill' | 'restoreSnapshot';

export const ACTION_LABELS: Record<AlertAction, string> = { resume: 'Resume', kill: 'Kill', restoreSnapshot: 'Restore Snapshot' };

/** What we know of the event's sandbox now (from the tree); absent fields are unknown. */
export interface SandboxNow {
  /** Incus still lists it. */
  exists?: boolean;
  state?: string;
  /** How many snapshots it has. */
  snapshots?: number;
}

/**
 * The actions that make sense for the event's sandbox: none once it is gone
 * (or the guard killed it); Resume only when it is frozen (by the tree's
 * state, else by what the guard did); Restore Snapshot unless it is known to
 * have none; Kill whenever it still exists.
 */
export function actionsFor(e: AlertEvent, now: SandboxNow = {}): AlertAction[] {
  if (now.exists === false || e.record.action === 'killed') return [];
  const frozen = now.state !== undefined ? now.state === 'frozen' : e.record.action === 'paused' || e.record.action === 'logged (already paused)';
  const out: AlertAction[] = [];
  if (frozen) out.push('resume');
  out.push('kill');
  if (now.snapshots === undefined || now.snapshots > 0) out.push('restoreSnapshot');
  return out;
}

/** Only these become notifications; INFO is in the log and the timeline only. */
export function notifies(e: AlertEvent): boolean {
  return LEVEL_ORDER[e.record.level] >= LEVEL_ORDER.warning;
}

export interface NotificationPlan {
  severity: 'warning' | 'error';
  message: string;
  /** The event the buttons act on: the first of the worst (the one the guard acted on; later ones say "kept frozen"). */
  primary: AlertEvent;
  count: number;
}

/**
 * One notification for a burst: the worst event says what was seen and done,
 * and a count says how many more came with it.
 */
export function planNotification(burst: readonly AlertEvent[]): NotificationPlan | undefined {
  const shown = burst.filter(notifies);
  if (shown.length === 0) return undefined;
  let primary = shown[0]!;
  for (const e of shown) if (LEVEL_ORDER[e.record.level] > LEVEL_ORDER[primary.record.level]) primary = e;
  const level = primary.record.level;
  const severity = level === 'warning' ? 'warning' : 'error';
  const containers = new Set(shown.map((e) => e.container));
  const more = shown.length - 1;
  const head = `COI ${level.toUpperCase()}: ${notificationSafe(describeAlert(primary))}`;
  const tail = more === 0 ? '' : containers.size > 1 ? ` (+${more} more threats in ${containers.size} sandboxes)` : ` (+${more} more ${more === 1 ? 'threat' : 'threats'})`;
  return { severity, message: `${head}${tail}`, primary, count: shown.length };
}

/**
 * When the notification of what is pending should show: after a short gather
 * (so one attack's several detections are one message), and not sooner than
 * the cooldown after the last one (a flood is a message every few seconds
 * with a count) — unless what is pending is worse than what was last shown:
 * a CRITICAL never waits behind a WARNING.
 */
export function notifyAt(now: number, pendingWorst: Level, last: { at: number; level: Level } | undefined, gatherMs: number, cooldownMs: number): number {
  const soon = now + gatherMs;
  if (!last || LEVEL_ORDER[pendingWorst] > LEVEL_ORDER[last.level]) return soon;
  return Math.max(soon, last.at + cooldownMs);
}

export function worstLevel(events: readonly AlertEvent[]): Level {
  let worst: Level = 'info';
  for (const e of events) if (LEVEL_ORDER[e.record.level] > LEVEL_ORDER[worst]) worst = e.record.level;
  return worst;
}

// ── the store ───────────────────────────────────────────────────────────────

export interface SlotAlerts {
  unseen: number;
  worst?: Level;
}

/**
 * Every event known, by id (a live push and the same line read from the log
 * are one event), newest first, capped; and per sandbox the events not yet
 * seen (WARNING and above: what was alerted).
 */
export class AlertLog {
  private readonly byId = new Map<string, AlertEvent>();
  private order: AlertEvent[] = [];
  private readonly unseen = new Map<string, Set<string>>();

  constructor(private readonly cap = 1_000) {}

  /** Adds events; live ones count as unseen. Returns those that were new. */
  add(events: readonly AlertEvent[], opts: { live: boolean }): AlertEvent[] {
    const fresh: AlertEvent[] = [];
    for (const e of events) {
      const id = e.record.id;
      if (this.byId.has(id)) {
        // The log's copy may know the audit path the push did not carry.
        const known = this.byId.get(id)!;
        if (!known.auditPath && e.auditPath) known.auditPath = e.auditPath;
        continue;
      }
      this.byId.set(id, e);
      fresh.push(e);
      if (opts.live && notifies(e)) {
        let set = this.unseen.get(e.container);
        if (!set) this.unseen.set(e.container, (set = new Set()));
        set.add(id);
      }
    }
    if (fresh.length) {
      this.order = [...this.byId.values()].sort(newestFirst);
      for (const old of this.order.splice(this.cap)) {
        this.byId.delete(old.record.id);
        this.unseen.get(old.container)?.delete(old.record.id);
      }
    }
    return fresh;
  }

  /** Newest first. */
  get events(): readonly AlertEvent[] {
    return this.order;
  }

  get(id: string): AlertEvent | undefined {
    return this.byId.get(id);
  }

  /** Marks a sandbox's events (or all) as seen; true when something changed. */
  markSeen(container?: string): boolean {
    if (container !== undefined) return (this.unseen.get(container)?.size ?? 0) > 0 && this.unseen.delete(container);
    const any = [...this.unseen.values()].some((s) => s.size > 0);
    this.unseen.clear();
    return any;
  }

  /** Per sandbox with unseen events: how many, and the worst level among them. */
  unseenBySandbox(): Record<string, SlotAlerts> {
    const out: Record<string, SlotAlerts> = {};
    for (const [container, ids] of this.unseen) {
      if (ids.size === 0) continue;
      let worst: Level | undefined;
      for (const id of ids) {
        const l = this.byId.get(id)?.record.level;
        if (l && (!worst || LEVEL_ORDER[l] > LEVEL_ORDER[worst])) worst = l;
      }
      out[container] = { unseen: ids.size, ...(worst ? { worst } : {}) };
    }
    return out;
  }

  unseenTotal(): number {
    let n = 0;
    for (const s of this.unseen.values()) n += s.size;
    return n;
  }
}

function newestFirst(a: AlertEvent, b: AlertEvent): number {
  return b.record.timestamp.localeCompare(a.record.timestamp) || b.record.id.localeCompare(a.record.id);
}

/** The status bar's words for the unseen alerts, or undefined when there are none. */
export function unseenStatus(bySandbox: Record<string, SlotAlerts>): { text: string; tooltip: string; worst: Level } | undefined {
  const entries = Object.entries(bySandbox).filter(([, a]) => a.unseen > 0);
  if (entries.length === 0) return undefined;
  const total = entries.reduce((n, [, a]) => n + a.unseen, 0);
  let worst: Level = 'warning';
  for (const [, a] of entries) if (a.worst && LEVEL_ORDER[a.worst] > LEVEL_ORDER[worst]) worst = a.worst;
  return {
    text: `$(${worst === 'warning' ? 'warning' : 'error'}) ${total} COI ${total === 1 ? 'alert' : 'alerts'}`,
    tooltip: ['Unseen COI threat alerts (click to show them):', ...entries.sort(([a], [b]) => a.localeCompare(b)).map(([c, a]) => `${c}: ${a.unseen}${a.worst ? ` (worst ${a.worst.toUpperCase()})` : ''}`)].join('\n'),
    worst,
  };
}
