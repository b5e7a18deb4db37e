/**
 * The bridge's dnsmasq query log, pure: where it is (from the bridge's
 * `raw.dnsmasq`) and what one line says. With `log-queries=extra` dnsmasq
 * writes, per query:
 *
 *   Nov 27 11:08:38 dnsmasq[12252]: 1 10.213.0.150/53760 query[A] mfrggzdfmzt.example.com from 10.213.0.150
 *
 * What dnsmasq 2.90 does with hostile names (tried): a name holding a byte it
 * cannot print (space, newline, escape, any 8-bit byte) is logged as
 * `<name unprintable>`, or refused before logging; so a name never spans two
 * lines nor contains a space, and a container cannot write a line of its own
 * into the log through a query.
 */

export interface QueryLogConfig {
  /** Absolute path of dnsmasq's log file. */
  path: string;
  /** `log-queries=extra`: each line also carries the query's source port. */
  extra: boolean;
}

/** Where a bridge's dnsmasq logs its queries, or undefined when it does not (to a file). */
export function queryLogOf(rawDnsmasq: string | undefined): QueryLogConfig | undefined {
  let logQueries: string | undefined;
  let file: string | undefined;
  for (const raw of (rawDnsmasq ?? '').split('\n')) {
    const line = raw.trim();
    const m = /^([a-z-]+)(?:=(.*))?$/.exec(line);
    if (!m) continue;
    if (m[1] === 'log-queries') logQueries = m[2] ?? '';
    // The last one wins, as in dnsmasq; "-" is stderr and a bare name is a syslog facility.
    if (m[1] === 'log-facility') file = m[2];
  }
  if (logQueries === undefined || !file?.startsWith('/') || file.includes('\0')) return undefined;
  return { path: file, extra: logQueries === 'extra' };
}

export interface LoggedQuery {
  /** Lower-case, without the final dot; empty when `unprintable`. */
  name: string;
  /** A name dnsmasq would not print: bytes, not a host name. */
  unprintable: boolean;
  /** A, AAAA, TXT, … as dnsmasq names it (`type=65399` for unknown ones). */
  type: string;
  /** The address the query came from (IPv4 or IPv6 as dnsmasq prints it). */
  source: string;
  sourcePort?: number;
  /** ms since epoch from the line's own stamp (second resolution, dnsmasq's local time), when it has one. */
  stampedAt?: number;
}

const LINE = /^(?:([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) )?dnsmasq\[\d+\]: (?:\d+ ([0-9a-fA-F.:]+)\/(\d{1,5}) )?query\[([A-Za-z0-9=]{1,16})\] (\S{1,1100}) from ([0-9a-fA-F.:]{2,45})$/;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const UNPRINTABLE = '<name unprintable>';

/**
 * One line of the log to a query, or undefined for anything else (replies,
 * forwards, DHCP, start-up notes). `now` dates the stamp, which has no year.
 */
export function parseQueryLine(line: string, now = Date.now()): LoggedQuery | undefined {
  // The unprintable marker is the one name with a space in it: make it a single token first.
  const text = line.replace(/\r?\n$/, '');
  const unprintable = text.includes(` ${UNPRINTABLE} from `);
  const m = LINE.exec(unprintable ? text.replace(UNPRINTABLE, '<unprintable>') : text);
  if (!m) return undefined;
  const source = m[10]!;
  // With `extra`, the address before the port is the same source: a line where they differ is not dnsmasq's.
  if (m[6] !== undefined && m[6] !== source) return undefined;
  const name = unprintable ? '' : m[9]!.toLowerCase().replace(/\.$/, '');
  if (!unprintable && !/^[\x21-\x7e]+$/.test(name)) return undefined;
  const q: LoggedQuery = { name, unprintable, type: m[8]!.toUpperCase(), source };
  if (m[7] !== undefined) q.sourcePort = Number(m[7]);
  if (m[1] !== undefined) {
    const month = MONTHS.indexOf(m[1]);
    if (month >= 0) {
      const at = (year: number) => new Date(year, month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])).getTime();
      const year = new Date(now).getFullYear();
      // A stamp "in the future" by more than a day is last year's (a log read across New Year).
      const t = at(year) > now + 86_400_000 ? at(year - 1) : at(year);
      if (Number.isFinite(t)) q.stampedAt = t;
    }
  }
  return q;
}
