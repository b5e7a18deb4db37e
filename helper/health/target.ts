/**
 * Where the live check knocks to see that restricted mode holds: a private
 * address a sandbox must not reach. Pure. Never a hostname (no DNS, no
 * surprise destinations): an IPv4 literal and a port.
 *
 * Default: on the dead-end network (tests, CI) its private test host
 * 10.99.0.2, which answers ping and TCP when nothing blocks it; elsewhere the
 * host's own default gateway when it is a private address (the LAN router,
 * the first thing an agent would probe), else 192.168.0.1.
 */
import { CoiError, ErrorCodes } from '../errors';
import { DEAD_END_HOSTS } from '../setup/names';

export interface ProbeTarget {
  address: string;
  port: number;
}

export function parseTarget(text: string): ProbeTarget {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? 80 : Number(m[2]);
  if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || port < 1 || port > 65535) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `--target takes an IPv4 address and an optional port (10.99.0.2 or 192.168.1.1:443), not "${text}"`);
  }
  return { address: m[1]!, port };
}

export function isPrivate(ip: string): boolean {
  const [a, b] = ip.split('.').map(Number);
  return a === 10 || (a === 172 && b! >= 16 && b! <= 31) || (a === 192 && b === 168);
}

export function chooseTarget(o: { flag?: string | undefined; env?: string | undefined; bridgeMode?: string | undefined; defaultGateway?: string | undefined }): ProbeTarget {
  if (o.flag) return parseTarget(o.flag);
  if (o.env) return parseTarget(o.env);
  if (o.bridgeMode === 'dead-end') return { address: DEAD_END_HOSTS.private, port: 80 };
  if (o.defaultGateway && isPrivate(o.defaultGateway)) return { address: o.defaultGateway, port: 80 };
  return { address: '192.168.0.1', port: 80 };
}

/** Runs inside the sandbox as root (an agent has sudo): ping, a TCP connect, and what confines the sandbox. */
export const PROBE_SCRIPT = `t="$1"; p="$2"
# A sandbox that has no lease yet reaches nothing, which would pass for "blocked": wait for one.
i=0; while [ $i -lt 150 ] && ! ip -4 route show default | grep -q .; do sleep 0.1; i=$((i+1)); done
echo "addr=$(ip -4 -o addr show scope global | sed -n 's/.* inet \\([^ ]*\\).*/\\1/p' | head -n 1)"
echo "route=$(ip -4 route show default | head -n 1)"
if command -v busybox >/dev/null 2>&1; then PING="busybox ping"; elif command -v ping >/dev/null 2>&1; then PING=ping; else PING=""; fi
if [ -z "$PING" ]; then echo icmp=unavailable; elif $PING -c 1 -W 2 "$t" >/dev/null 2>&1; then echo icmp=reply; else echo icmp=no-reply; fi
err=$(timeout 4 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$t" "$p" 2>&1); rc=$?
case "$rc:$err" in
  0:*) echo tcp=connected ;;
  124:*) echo tcp=timeout ;;
  *refused*) echo tcp=refused ;;
  *"No route"*|*nreachable*|*"not permitted"*) echo tcp=unreachable ;;
  *) echo "tcp=error $(echo "$err" | tail -n 1)" ;;
esac
echo "seccomp=$(grep '^Seccomp:' /proc/1/status | tr -dc 0-9)"
echo "uidmap=$(head -n 1 /proc/self/uid_map)"
`;

/** key=value lines of the probe script. */
export function parseProbeOutput(out: string): { icmp: 'reply' | 'no-reply' | 'unavailable'; tcp: 'connected' | 'refused' | 'unreachable' | 'timeout' | 'error'; address?: string; route?: string; seccomp?: string; uidMap?: string } {
  const kv = new Map<string, string>();
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1));
  }
  const icmp = kv.get('icmp');
  const tcp = (kv.get('tcp') ?? 'error').split(' ')[0];
  const res: ReturnType<typeof parseProbeOutput> = {
    icmp: icmp === 'reply' || icmp === 'no-reply' ? icmp : 'unavailable',
    tcp: tcp === 'connected' || tcp === 'refused' || tcp === 'unreachable' || tcp === 'timeout' ? tcp : 'error',
  };
  if (kv.get('addr')) res.address = kv.get('addr')!;
  if (kv.get('route')) res.route = kv.get('route')!;
  if (kv.get('seccomp')) res.seccomp = kv.get('seccomp')!;
  if (kv.get('uidmap')) res.uidMap = kv.get('uidmap')!;
  return res;
}
