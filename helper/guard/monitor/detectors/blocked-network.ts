/**
 * Connections the firewall refused or dropped, from the guard's nft log
 * (NetworkPacket): the attempt itself is the finding, since a connection that
 * never got through leaves nothing in the socket tables.
 *
 * - to the metadata endpoint, or to a classic C2 port: as for a live
 *   connection (CRITICAL / HIGH, `classifyRemote`);
 * - refused by the allowlist (`notallowed`): HIGH;
 * - to a private, link-local, CGNAT address or the host itself: HIGH;
 * - DNS to a resolver other than the gateway (`dns`): WARNING, a tunnel's
 *   first move;
 * - anything else the rules drop (boot block, IPv6, VLAN, multicast…): INFO.
 *
 * One event per rule and destination; the de-duplicator folds repeats.
 */
import { formatEndpoint } from '../ip';
import type { Snapshot } from '../model';
import { classifyRemote } from './connections';
import { displaySafe, eventFactory } from './common';
import type { Detector, DetectorContext, NetworkPacket, Severity, ThreatEvent } from './types';

const ID = 'blocked-connection';
const MITRE = ['T1071', 'T1046', 'T1048'];

const PRIVATE_RULES = new Set(['private', 'linklocal', 'cgnat', 'host']);

interface Verdict {
  level: Severity;
  title: string;
  rule: string;
  why: string;
  mitre?: string[];
}

export function judgePacket(p: NetworkPacket, ctx: DetectorContext): Verdict {
  const port = p.dport ?? 0;
  const known = p.dst ? classifyRemote(p.dst, port, { ...ctx, network: undefined }) : undefined;
  if (known) return { level: known.level, title: `${known.title} (blocked)`, rule: known.rule, why: known.why, mitre: known.mitre };
  if (p.rule === 'notallowed') return { level: 'high', title: 'Connection outside the allowlist refused', rule: 'not-allowlisted', why: 'an address the allowlist does not name' };
  if (PRIVATE_RULES.has(p.rule)) return { level: 'high', title: 'Connection to a private network refused', rule: 'private-network', why: 'an address the sandbox may not reach' };
  if (p.rule === 'dns') return { level: 'warning', title: 'DNS to another resolver refused', rule: 'foreign-dns', why: 'DNS to anything but the gateway is how tunnels start' };
  return { level: 'info', title: 'Packet dropped by the sandbox firewall', rule: 'other', why: `rule ${displaySafe(p.rule, 32)}` };
}

export const blockedConnectionDetector: Detector = {
  id: ID,
  title: 'Blocked connection',
  severity: 'critical',
  mitre: MITRE,
  exceptions: [],
  evaluate(current: Snapshot, _previous, ctx): ThreatEvent[] {
    // Packets let through but noted (DNS shaped like a tunnel) are the DNS detector's.
    const packets = (ctx.packets ?? []).filter((p) => p.action !== 'log');
    if (!packets.length) return [];
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const seen = new Set<string>();
    const out: ThreatEvent[] = [];
    for (const p of packets.slice(-1000)) {
      const dst = p.dst ? formatEndpoint(p.dst, p.dport ?? 0) : '(no address)';
      const key = `${p.rule}:${p.proto ?? '?'}:${dst}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const v = judgePacket(p, ctx);
      out.push(
        make({
          level: v.level,
          category: 'suspicious_connection',
          title: v.title,
          description: `The firewall ${p.action === 'reject' ? 'refused' : 'dropped'} ${displaySafe(p.proto ?? 'a packet', 16)} to ${displaySafe(dst, 64)}: ${v.why}.`,
          evidence: {
            network: { proto: p.proto === 'udp' ? 'udp' : 'tcp', remote: p.dst ?? '', port: p.dport ?? 0, local: p.src ?? '', state: p.action },
            rule: `${ID}/${v.rule}`,
            key,
          },
          ...(v.mitre ? { mitre: v.mitre } : {}),
        }),
      );
    }
    return out;
  },
};
