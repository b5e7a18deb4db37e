/**
 * Outgoing connections to places an agent has no business reaching:
 * - the cloud metadata endpoint (credentials live there): CRITICAL;
 * - classic C2 / reverse-shell ports: 4444 and 5555 CRITICAL (Metasploit's
 *   and a common listener default), 1234, 12345, 31337 and IRC 6666-6697 HIGH;
 * - private ranges (RFC 1918, CGNAT, ULA, link-local) when the network policy
 *   is not `open`, unless the address is the container's gateway or allowlisted: HIGH;
 * - in allowlist mode, any address outside the allowlist: HIGH (the firewall
 *   should have refused it: seeing it established means a hole).
 *
 * Works on the namespace's socket tables, so a connection is seen even when
 * no process fd scan has attributed it yet; when one has, the process and
 * its lineage are in the evidence. Loopback is left to the reverse-shell
 * detector: a connection to the container itself leaves nothing.
 */
import { formatEndpoint, inAnyCidr, isLinkLocal, isLoopback, isMetadata, isPrivate, isUnspecified } from '../ip';
import { ProcessInfo, processKey, Snapshot, SocketInfo } from '../model';
import { describeLineage, describeProcess, eventFactory, exceptionEnabled, networkEvidence, processEvidence } from './common';
import type { Detector, Severity, ThreatEvent } from './types';

const ID = 'suspicious-connection';
const MITRE = ['T1071', 'T1571', 'T1552.005'];

export const CRITICAL_PORTS = new Set([4444, 5555]);
export const C2_PORTS = new Set([1234, 12345, 31337, 4444, 5555]);
export function isC2Port(port: number): boolean {
  return C2_PORTS.has(port) || (port >= 6666 && port <= 6697);
}

const EXCEPTIONS = [
  { name: 'gateway', description: 'Connections to the container\'s own gateway/resolver (from the network policy) are normal.' },
  { name: 'incoming', description: 'Connections accepted on a port the container listens on were made by the peer, not the agent.' },
  { name: 'loopback', description: 'Connections inside the container never leave it.' },
];

interface Finding {
  level: Severity;
  rule: string;
  title: string;
  why: string;
  mitre: string[];
}

export function classifyRemote(address: string, port: number, ctx: Parameters<Detector['evaluate']>[2]): Finding | undefined {
  if (isLoopback(address) || isUnspecified(address)) return undefined;
  if (isMetadata(address)) {
    return { level: 'critical', rule: 'metadata-endpoint', title: 'Connection to the cloud metadata endpoint', why: 'the cloud metadata service hands out instance credentials', mitre: ['T1552.005'] };
  }
  if (isC2Port(port)) {
    return {
      level: CRITICAL_PORTS.has(port) ? 'critical' : 'high',
      rule: 'c2-port',
      title: 'Connection to a classic C2 port',
      why: `port ${port} is a classic reverse-shell / command-and-control port`,
      mitre: ['T1571', 'T1071'],
    };
  }
  const net = ctx.network;
  if (!net || net.mode === 'open') return undefined;
  if (exceptionEnabled(ctx, 'gateway') && inAnyCidr(address, net.gateways)) return undefined;
  if (inAnyCidr(address, net.allowlist)) return undefined;
  if (isPrivate(address) || isLinkLocal(address)) {
    return { level: 'high', rule: 'private-network', title: 'Connection to a private network', why: 'a private address the sandbox should not reach', mitre: ['T1046', 'T1071'] };
  }
  if (net.mode === 'allowlist') {
    return { level: 'high', rule: 'not-allowlisted', title: 'Connection outside the allowlist', why: 'an address outside the allowlist (the firewall should have refused it)', mitre: ['T1071'] };
  }
  return undefined;
}

function outgoing(s: SocketInfo, listening: Set<string>): boolean {
  if (s.remote.port === 0) return false;
  if (s.proto === 'tcp' && (s.state === 'LISTEN' || s.state === 'CLOSE')) return false;
  // Accepted connections have the local port of a listener.
  return !listening.has(`${s.proto}:${s.local.port}`);
}

export const suspiciousConnectionDetector: Detector = {
  id: ID,
  title: 'Suspicious connection',
  severity: 'critical',
  mitre: MITRE,
  exceptions: EXCEPTIONS,
  evaluate(current: Snapshot, _previous, ctx): ThreatEvent[] {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const listening = new Set<string>();
    for (const s of current.connections) {
      if (s.proto === 'tcp' && s.state === 'LISTEN') listening.add(`tcp:${s.local.port}`);
    }
    const owner = new Map<number, ProcessInfo>();
    for (const p of current.processes.values()) for (const f of p.fds) if (f.socket && !owner.has(f.socket.inode)) owner.set(f.socket.inode, p);

    const events: ThreatEvent[] = [];
    const seen = new Set<string>();
    for (const s of current.connections) {
      if (exceptionEnabled(ctx, 'incoming') ? !outgoing(s, listening) : s.remote.port === 0) continue;
      const f = classifyRemote(s.remote.address, s.remote.port, ctx);
      if (!f) continue;
      const remote = formatEndpoint(s.remote.address, s.remote.port);
      const p = s.inode ? owner.get(s.inode) : undefined;
      // One event per process and destination; a socket-less row (TIME_WAIT) once per destination.
      const key = `${p ? processKey(p) : 'no-process'}:${s.proto}:${remote}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const ev = make({
        level: f.level,
        category: 'suspicious_connection',
        title: f.title,
        description: `${p ? describeProcess(p) : 'A process that has since closed the socket'} — ${s.proto} ${s.state === 'ESTABLISHED' ? 'connection' : `socket (${s.state})`} to ${remote}: ${f.why}.${p ? ` Chain: ${describeLineage(current, p.pid)}.` : ''}`,
        evidence: { network: networkEvidence(s), rule: `${ID}/${f.rule}`, key },
        mitre: f.mitre,
      });
      if (p) ev.evidence.process = processEvidence(current, p);
      events.push(ev);
    }
    return events;
  },
};
