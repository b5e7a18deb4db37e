/**
 * One alert as DOM, built with createElement and textContent only: nothing
 * that came from a container is ever parsed as HTML, and every such string
 * goes through `visible` first, so terminal escapes show as \x1b… instead of
 * vanishing. No inline handlers (the CSP forbids them anyway): the caller
 * delegates clicks by data attributes.
 */
import { ACTION_LABELS, AlertAction, AlertEvent, actionSentence, actionsFor, remoteOf, SandboxNow, visible, whatWasSeen } from '../extension/alerts/model';

type Lineage = { pid: number; comm: string; argv: string[] };

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A codicon: decoration only, so screen readers skip it (the text beside it says the same). */
function icon(name: string): HTMLSpanElement {
  const i = el('span', `codicon codicon-${name}`);
  i.setAttribute('aria-hidden', 'true');
  return i;
}

const LEVEL_ICONS: Record<string, string> = { critical: 'error', high: 'flame', warning: 'warning', info: 'info' };
const ACTION_ICONS: Record<AlertAction, string> = { resume: 'debug-continue', kill: 'trash', restoreSnapshot: 'history' };

function row(dl: HTMLDListElement, term: string, value: string | HTMLElement): void {
  dl.append(el('dt', undefined, term));
  const dd = el('dd');
  if (typeof value === 'string') dd.textContent = value;
  else dd.append(value);
  dl.append(dd);
}

function argvText(argv: readonly string[]): string {
  return argv.map((a) => visible(a, 2_000)).join(' ');
}

function formatBytes(n: unknown): string | undefined {
  if (typeof n !== 'number' || !Number.isFinite(n)) return undefined;
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** The time in the viewer's zone, to the second; the raw text when it is no date. */
export function formatWhen(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return visible(iso, 64);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The evidence as a definition list: chain, command line, remote, bytes, rule, MITRE, response. */
export function evidenceList(e: AlertEvent): HTMLDListElement {
  const r = e.record;
  const ev = r.evidence;
  const dl = el('dl', 'evidence');
  const p = ev.process;
  if (p) {
    row(dl, 'Process', `${visible(p.comm, 256)} (pid ${p.pid}${p.nsPid !== undefined ? `, ${p.nsPid} in the container` : ''}${p.uid !== undefined ? `, uid ${p.uid}` : ''})`);
    if (p.exe) row(dl, 'Executable', visible(p.exe, 1_000));
    row(dl, 'Command line', p.argv.length ? argvText(p.argv) : '(unknown: the process had exited)');
    const lineage = (p.lineage ?? []) as Lineage[];
    if (lineage.length) {
      const chain = el('ol', 'chain');
      chain.setAttribute('aria-label', 'Process chain, the process first, then its parent, up to init');
      lineage.forEach((l, i) => chain.append(el('li', undefined, `${i === 0 ? '' : '← '}${visible(l.comm, 256)}[${l.pid}]${l.argv.length ? ` ${argvText(l.argv)}` : ''}`)));
      row(dl, 'Process chain', chain);
    }
  }
  const n = ev.network;
  if (n) {
    row(dl, 'Remote', `${remoteOf(r) ?? visible(n.remote, 80)} (${n.proto}${n.state ? `, ${visible(n.state, 64)}` : ''})`);
    if (n.local) row(dl, 'Local', visible(n.local, 80));
    if (n.fds?.length) row(dl, 'On file descriptors', n.fds.join(', '));
  }
  const fs = ev.filesystem;
  if (fs) {
    const read = formatBytes(fs.readBytes);
    const written = formatBytes(fs.writeBytes ?? fs.writtenBytes);
    if (read) row(dl, 'Bytes read', `${read}${typeof fs.windowMs === 'number' ? ` in ${(fs.windowMs / 1000).toFixed(1)} s` : ''}`);
    if (written) row(dl, 'Bytes written', written);
    if (typeof fs.path === 'string') row(dl, 'File', visible(fs.path, 1_000));
  }
  const dns = ev.dns;
  if (dns && typeof dns.name === 'string') row(dl, 'Domain', visible(dns.name, 1_000));
  row(dl, 'Rule', visible(ev.rule, 256));
  if (r.mitre?.length) row(dl, 'MITRE ATT&CK', r.mitre.map((m) => visible(m, 32)).join(', '));
  if (r.detector) row(dl, 'Detector', visible(r.detector, 64));
  row(dl, 'Category', visible(r.category, 64));
  if (r.response) {
    const parts = [r.response.containMs !== undefined ? `frozen ${r.response.containMs} ms after detection` : undefined, r.response.error ? `error: ${visible(r.response.error, 500)}` : undefined].filter((x): x is string => !!x);
    if (parts.length) row(dl, 'Response', parts.join('; '));
  }
  row(dl, 'Description', visible(r.description, 16_384));
  row(dl, 'Event id', visible(r.id, 64));
  return dl;
}

/** The whole alert: head, one-line summary, evidence (collapsible), actions and the raw line. */
export function renderEvent(e: AlertEvent, now: SandboxNow, opts: { open: boolean }): HTMLLIElement {
  const r = e.record;
  const li = el('li', `event level-${r.level}`);
  li.dataset.id = r.id;
  li.dataset.container = e.container;
  const head = el('div', 'head');
  const badge = el('span', 'badge', r.level.toUpperCase());
  badge.prepend(icon(LEVEL_ICONS[r.level] ?? 'info'));
  head.append(badge, el('span', 'title', visible(r.title, 1_024)));
  head.append(el('span', 'meta', `${formatWhen(r.timestamp)} · ${visible(e.container, 128)}`));
  li.append(head);
  li.append(el('div', 'summary', whatWasSeen(r)));
  li.append(el('div', 'did', actionSentence(r.action)));
  const details = el('details');
  details.open = opts.open;
  details.append(el('summary', undefined, 'Evidence'));
  details.append(evidenceList(e));
  li.append(details);
  const actions = el('div', 'actions');
  for (const a of actionsFor(e, now)) actions.append(actionButton(a, e));
  const raw = el('button', 'link', 'Open audit line');
  raw.type = 'button';
  raw.dataset.openAudit = '1';
  raw.title = e.auditPath ? `${visible(e.auditPath, 1_000)}` : 'The sandbox\'s audit log';
  actions.append(raw);
  li.append(actions);
  return li;
}

function actionButton(a: AlertAction, e: AlertEvent): HTMLButtonElement {
  const b = el('button', a === 'kill' ? undefined : 'secondary', ACTION_LABELS[a]);
  b.type = 'button';
  b.prepend(icon(ACTION_ICONS[a]));
  b.dataset.action = a;
  b.setAttribute('aria-label', `${ACTION_LABELS[a]} ${visible(e.container, 128)}`);
  return b;
}
