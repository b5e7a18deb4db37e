/**
 * The messages between the extension and the alert webview, both ways. The
 * extension holds the truth (every event, each sandbox's state) and the
 * webview renders it; what the webview sends is checked here before anything
 * acts on it, like any message from another process.
 */
import type { AlertAction, AlertEvent, SandboxNow } from './model';

export type SandboxesNow = Record<string, SandboxNow & { slot?: number }>;

export type ToWebview =
  /** Everything, newest first: on (re)load of the webview. `listed`: as for 'sandboxes'. */
  | { type: 'init'; events: AlertEvent[]; sandboxes: SandboxesNow; listed: boolean; focus?: string }
  /** New events (newest first). */
  | { type: 'add'; events: AlertEvent[] }
  /**
   * The sandboxes changed (state, gone): the buttons follow. `listed`: the
   * list is known, so a sandbox missing from it is gone (else: unknown).
   */
  | { type: 'sandboxes'; sandboxes: SandboxesNow; listed: boolean }
  /** Show this event: filters cleared if they hide it, scrolled to, evidence open. */
  | { type: 'focus'; id: string };

export type FromWebview =
  | { type: 'ready' }
  | { type: 'action'; action: AlertAction; container: string; id: string }
  | { type: 'openAudit'; container: string; id: string };

const NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;
const ID = /^[\w.:-]{1,64}$/;
const ACTIONS: readonly AlertAction[] = ['resume', 'kill', 'restoreSnapshot'];

/** The message if it is one the webview may send, else undefined. */
export function parseFromWebview(raw: unknown): FromWebview | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const m = raw as Record<string, unknown>;
  if (m.type === 'ready') return { type: 'ready' };
  const container = typeof m.container === 'string' && NAME.test(m.container) ? m.container : undefined;
  const id = typeof m.id === 'string' && ID.test(m.id) ? m.id : undefined;
  if (!container || !id) return undefined;
  if (m.type === 'openAudit') return { type: 'openAudit', container, id };
  if (m.type === 'action' && typeof m.action === 'string' && (ACTIONS as readonly string[]).includes(m.action)) {
    return { type: 'action', action: m.action as AlertAction, container, id };
  }
  return undefined;
}
