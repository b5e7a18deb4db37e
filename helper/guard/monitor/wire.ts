/**
 * Audit records as they travel: to subscribers on the guard's `threat` topic
 * and in `audit/read` answers. The protocol caps sizes; a record read from a
 * file or made from hostile data is cut to fit here, so it is never dropped by
 * a validating receiver.
 */
import type { ThreatRecord } from '../../protocol/methods';
import { threatRecord } from '../../protocol/methods';
import type { AuditRecord } from './audit';

const cut = (s: unknown, n: number): string => {
  const t = typeof s === 'string' ? s : s === undefined ? '' : String(s);
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
};

export function toThreatWire(r: AuditRecord): ThreatRecord {
  const ev = r.evidence ?? {};
  const out: Record<string, unknown> = {
    ...r,
    id: cut(r.id, 64),
    timestamp: cut(r.timestamp, 64),
    category: cut(r.category, 64),
    title: cut(r.title, 1024),
    description: cut(r.description, 16_384),
    action: cut(r.action, 64),
    container: cut(r.container, 128),
    evidence: { ...ev, rule: cut(ev.rule, 256), key: cut(ev.key, 1024) },
  };
  if (r.detector !== undefined) out.detector = cut(r.detector, 64);
  if (r.mitre !== undefined) out.mitre = r.mitre.slice(0, 16).map((m) => cut(m, 32));
  const parsed = threatRecord().safeParse(out);
  if (parsed.success) return parsed.data;
  // Evidence of an unexpected shape (an older or hand-edited file): keep what identifies it.
  return threatRecord().parse({ ...out, evidence: { rule: cut(ev.rule, 256), key: cut(ev.key, 1024), unparsed: true } });
}
