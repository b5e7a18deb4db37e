/**
 * The alert webview (command coi.showAlerts): a live timeline of the audit
 * events of all sandboxes, newest first, filtered by sandbox and severity,
 * each with its evidence and the actions that apply. The extension posts the
 * events (messages.ts); this renders them as text and posts back the clicks.
 * Filters and the open evidence survive hide/show and reloads (setState).
 */
import type { FromWebview, SandboxesNow, ToWebview } from '../extension/alerts/messages';
import { AlertEvent, LEVEL_ORDER, LEVELS, Level, visible } from '../extension/alerts/model';
import { renderEvent } from './render';

interface VsCodeApi {
  postMessage(m: FromWebview): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

interface ViewState {
  sandbox: string;
  minLevel: Level;
  open: string[];
}

const vscode = acquireVsCodeApi();
const saved = (vscode.getState() ?? {}) as Partial<ViewState>;
const view: ViewState = {
  sandbox: typeof saved.sandbox === 'string' ? saved.sandbox : '',
  minLevel: saved.minLevel && saved.minLevel in LEVEL_ORDER ? saved.minLevel : 'info',
  open: Array.isArray(saved.open) ? saved.open.filter((x): x is string => typeof x === 'string').slice(-200) : [],
};
let events: AlertEvent[] = [];
let sandboxes: SandboxesNow = {};
let listed = false;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const timeline = $<HTMLOListElement>('timeline');
const sandboxSelect = $<HTMLSelectElement>('filter-sandbox');
const levelSelect = $<HTMLSelectElement>('filter-level');
const count = $<HTMLSpanElement>('count');
const empty = $<HTMLParagraphElement>('empty');

function option(value: string, label: string): HTMLOptionElement {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  return o;
}

for (const l of LEVELS) levelSelect.append(option(l, l === 'info' ? 'All' : `${l.toUpperCase()} and above`));

function save(): void {
  vscode.setState(view);
}

function renderSandboxOptions(): void {
  const names = [...new Set(events.map((e) => e.container))].sort();
  if (view.sandbox && !names.includes(view.sandbox)) names.unshift(view.sandbox);
  sandboxSelect.replaceChildren(option('', 'All'), ...names.map((n) => option(n, `${visible(n, 128)}${listed && !sandboxes[n] ? ' (gone)' : sandboxes[n]?.state === 'frozen' ? ' (frozen)' : ''}`)));
  sandboxSelect.value = view.sandbox;
  levelSelect.value = view.minLevel;
}

function shown(e: AlertEvent): boolean {
  return (!view.sandbox || e.container === view.sandbox) && LEVEL_ORDER[e.record.level] >= LEVEL_ORDER[view.minLevel];
}

function render(): void {
  renderSandboxOptions();
  const list = events.filter(shown);
  const open = new Set(view.open);
  timeline.replaceChildren(...list.map((e) => renderEvent(e, sandboxes[e.container] ?? (listed ? { exists: false } : {}), { open: open.has(e.record.id) })));
  empty.hidden = list.length > 0;
  empty.textContent = events.length === 0 ? 'No threat alerts yet.' : 'No alert matches the filters.';
  count.textContent = `${list.length} of ${events.length} ${events.length === 1 ? 'event' : 'events'}`;
}

function focus(id: string): void {
  const e = events.find((x) => x.record.id === id);
  if (!e) return;
  if (!shown(e)) {
    view.sandbox = '';
    view.minLevel = 'info';
  }
  if (!view.open.includes(id)) view.open.push(id);
  save();
  render();
  const li = [...timeline.children].find((c) => (c as HTMLElement).dataset.id === id) as HTMLElement | undefined;
  li?.scrollIntoView({ block: 'center' });
  li?.querySelector('summary')?.focus();
}

window.addEventListener('message', (m: MessageEvent<ToWebview>) => {
  const msg = m.data;
  if (!msg || typeof msg !== 'object') return;
  switch (msg.type) {
    case 'init':
      events = msg.events;
      sandboxes = msg.sandboxes;
      listed = msg.listed;
      render();
      if (msg.focus) focus(msg.focus);
      break;
    case 'add': {
      const known = new Set(events.map((e) => e.record.id));
      events = [...msg.events.filter((e) => !known.has(e.record.id)), ...events].sort((a, b) => b.record.timestamp.localeCompare(a.record.timestamp));
      render();
      break;
    }
    case 'sandboxes':
      sandboxes = msg.sandboxes;
      listed = msg.listed;
      render();
      break;
    case 'focus':
      focus(msg.id);
      break;
  }
});

sandboxSelect.addEventListener('change', () => {
  view.sandbox = sandboxSelect.value;
  save();
  render();
});
levelSelect.addEventListener('change', () => {
  view.minLevel = levelSelect.value as Level;
  save();
  render();
});

// Evidence opened or closed: remembered by event id.
timeline.addEventListener(
  'toggle',
  (ev) => {
    const li = (ev.target as HTMLElement).closest('li.event') as HTMLElement | null;
    const id = li?.dataset.id;
    if (!id) return;
    const isOpen = (ev.target as HTMLDetailsElement).open;
    view.open = view.open.filter((x) => x !== id);
    if (isOpen) view.open.push(id);
    save();
  },
  true,
);

timeline.addEventListener('click', (ev) => {
  const button = (ev.target as HTMLElement).closest('button');
  const li = button?.closest('li.event') as HTMLElement | null;
  if (!button || !li?.dataset.id || !li.dataset.container) return;
  const { id, container } = li.dataset;
  if (button.dataset.openAudit) vscode.postMessage({ type: 'openAudit', container, id });
  else if (button.dataset.action) vscode.postMessage({ type: 'action', action: button.dataset.action as 'resume' | 'kill' | 'restoreSnapshot', container, id });
});

render();
vscode.postMessage({ type: 'ready' });
