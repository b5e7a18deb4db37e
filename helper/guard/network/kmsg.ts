/**
 * Kernel log lines of our nft `log` rules, as read from /dev/kmsg (or printed
 * by `dmesg`), into events the monitor can act on. There is no journald here:
 * the kernel ring buffer is where nft logs go.
 *
 *   6,2841,763555041,-;coi:reject:web-1:private IN=br0 OUT=eth0 PHYSIN=vcoi1 MAC=… SRC=10.0.3.5 DST=10.99.0.2 … PROTO=TCP SPT=58054 DPT=80 …
 *
 * The prefix (`coi:<drop|reject>:<key>:<rule> `, see names.ts) says which
 * sandbox and which rule; the rest is nf_log's `KEY=value` dump of the packet.
 * The sandbox is identified by the prefix, which came from the rule that matched
 * on its host-side interface, never by the packet's source address.
 */
import type { LogAction } from './names';

export interface PacketEvent {
  /** The sandbox key from the prefix (the container name for every name Incus accepts). */
  container: string;
  rule: string;
  /** `log`: the packet went through, noted (DNS queries shaped like a tunnel). */
  action: LogAction;
  /** Absent for frames that are not IP (a VLAN or other L2 drop). */
  family?: 4 | 6;
  src?: string;
  dst?: string;
  /** Lower-case: tcp, udp, icmp, icmpv6, … or the protocol number as the kernel printed it. */
  proto?: string;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  /** Interfaces as the hook saw them: IN is the bridge in inet hooks, the veth at ingress. */
  inIface?: string;
  outIface?: string;
  /** The bridge port (the container's veth) when br_netfilter saw the packet. */
  physIn?: string;
  /** Microseconds since boot (kmsg and dmesg timestamps). */
  monotonicUs?: number;
  /** kmsg sequence number: detects gaps when the ring buffer overran. */
  seq?: number;
}

const KMSG = /^(\d+),(\d+),(\d+),[^;]*;(.*)$/s;
const DMESG = /^(?:<(\d+)>)?\[\s*(\d+)\.(\d+)\]\s?(.*)$/s;
const PREFIX = /^coi:(drop|reject|log):([A-Za-z0-9_-]+):([a-z0-9]+) (.*)$/s;

/** Full-form IPv6 ("fd00:0000:…:0010", as nf_log prints it) to the canonical compressed form. */
export function compressIpv6(full: string): string {
  const groups = full.split(':');
  if (groups.length !== 8 || !groups.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return full;
  const parts = groups.map((g) => parseInt(g, 16).toString(16));
  // The longest run of two or more zero groups becomes "::" (the first such run on a tie).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return parts.join(':');
  return `${parts.slice(0, best).join(':')}::${parts.slice(best + bestLen).join(':')}`;
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/**
 * One line (one kmsg record, or one `dmesg` line) to an event, or undefined
 * when it is not a packet line of ours. kmsg records whose facility is not the
 * kernel's (0) are refused: only the kernel can write those, while any process
 * allowed to open /dev/kmsg for writing can write a line that looks like ours.
 */
export function parsePacketLogLine(line: string): PacketEvent | undefined {
  let message = line.replace(/\n$/, '');
  let monotonicUs: number | undefined;
  let seq: number | undefined;
  const k = KMSG.exec(message);
  if (k) {
    if (Number(k[1]) >> 3 !== 0) return undefined;
    seq = Number(k[2]);
    monotonicUs = Number(k[3]);
    message = k[4] ?? '';
    // kmsg continuation lines (" SUBSYSTEM=…") follow the record; only the first line is the message.
    message = message.split('\n')[0] ?? '';
  } else {
    const d = DMESG.exec(message);
    if (d) {
      if (d[1] !== undefined && Number(d[1]) >> 3 !== 0) return undefined;
      monotonicUs = Number(d[2]) * 1_000_000 + Number((d[3] ?? '0').padEnd(6, '0').slice(0, 6));
      message = d[4] ?? '';
    }
  }
  const p = PREFIX.exec(message);
  if (!p) return undefined;
  const ev: PacketEvent = { action: p[1] as LogAction, container: p[2] ?? '', rule: p[3] ?? '' };
  if (seq !== undefined) ev.seq = seq;
  if (monotonicUs !== undefined) ev.monotonicUs = monotonicUs;

  // "KEY=value" pairs and bare flags (DF, SYN); the first occurrence of a key wins
  // (UDP repeats LEN for its own header).
  const kv = new Map<string, string>();
  for (const tok of (p[4] ?? '').split(' ')) {
    const i = tok.indexOf('=');
    if (i <= 0) continue;
    const key = tok.slice(0, i);
    if (!kv.has(key)) kv.set(key, tok.slice(i + 1));
  }
  const set = <K extends keyof PacketEvent>(key: K, v: PacketEvent[K] | undefined | ''): void => {
    if (v !== undefined && v !== '') ev[key] = v as PacketEvent[K];
  };
  set('inIface', kv.get('IN'));
  set('outIface', kv.get('OUT'));
  set('physIn', kv.get('PHYSIN'));
  const src = kv.get('SRC');
  const dst = kv.get('DST');
  if (src !== undefined && dst !== undefined) {
    const v6 = src.includes(':');
    ev.family = v6 ? 6 : 4;
    ev.src = v6 ? compressIpv6(src) : src;
    ev.dst = v6 ? compressIpv6(dst) : dst;
  }
  const proto = kv.get('PROTO');
  if (proto !== undefined) ev.proto = proto.toLowerCase();
  set('sport', num(kv.get('SPT')));
  set('dport', num(kv.get('DPT')));
  if (ev.proto === 'icmp' || ev.proto === 'icmpv6') {
    set('icmpType', num(kv.get('TYPE')));
    set('icmpCode', num(kv.get('CODE')));
  }
  return ev;
}
