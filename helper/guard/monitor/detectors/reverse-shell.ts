/**
 * Reverse shells, judged first by what a process is doing, then by what its
 * command line says.
 *
 * Behaviour (always CRITICAL; a renamed binary cannot dodge it):
 * - shell-stdio-network: a shell or interpreter whose stdin, stdout or stderr
 *   is a connected inet socket (Falco's "stdin/stdout redirected to a network
 *   socket"). `bash -c 'exec sh -i <&3 >&3 3<>/dev/tcp/…'`, python's
 *   `os.dup2(s.fileno(), 0)`, `nc -e /bin/sh` — all end here.
 * - stdio-redirected-network: ANY process whose stdin and stdout/stderr are
 *   connected inet sockets: an interactive session driven from the network,
 *   whatever the binary is called (a copy of sh named `update-check`).
 * - inherited-network-stdio: any process with a standard stream on a socket
 *   that an ancestor shell also holds: the socket was handed down to run it
 *   (`exec 3<>/dev/tcp/…; ./x <&3`), or the reverse shell is running a command.
 * - shell-piped-to-network: a shell or interpreter whose input comes from,
 *   and whose output goes to, processes holding network sockets through pipes
 *   or a fifo (`mkfifo f; cat f | sh -i | nc host port > f`, telnet and
 *   openssl s_client pipes). A non-shell in that position is CRITICAL once it
 *   starts children (it is executing commands), WARNING before.
 * - stdio-network (WARNING): any other process with a standard stream on a
 *   connected inet socket. Rare and worth a look; not worth a kill.
 *
 * Command-line patterns (the known one-liner families) are a second layer,
 * at the level `reverse_shell_one_liners` sets (critical | warn | off).
 */
import { childrenIndex, FdInfo, isConnected, lineage, networkStdio, ProcessInfo, processKey, Snapshot, SocketInfo } from '../model';
import { formatEndpoint } from '../ip';
import { describeLineage, describeProcess, displaySafe, eventFactory, hasName, isShell, isShellOrInterpreter, networkEvidence, processEvidence } from './common';
import type { Detector, DetectorContext, Severity, ThreatEvent } from './types';

const ID = 'reverse-shell';
const MITRE = ['T1059', 'T1059.004', 'T1071'];

const EXCEPTIONS = [
  {
    name: 'unresolved-sockets',
    description: 'Sockets not found in the inet tables (unix socketpairs, which node and many runners use for a child\'s stdio) are never treated as network.',
  },
];

// ── behaviour ───────────────────────────────────────────────────────────────

interface Connected {
  fd: FdInfo;
  socket: SocketInfo;
}

function connectedFds(p: ProcessInfo): Connected[] {
  const out: Connected[] = [];
  for (const fd of p.fds) if (fd.socket && isConnected(fd.socket)) out.push({ fd, socket: fd.socket });
  return out;
}

/** A stream identity that two processes can share: a pipe inode or a path (a fifo). */
function streamId(fd: FdInfo | undefined): string | undefined {
  if (!fd) return undefined;
  if (fd.kind === 'pipe' && fd.inode !== undefined) return `pipe:${fd.inode}`;
  // A fifo is shared by name; /dev/null and ttys are shared by everyone and carry nothing.
  if (fd.kind === 'file' && fd.target !== '/dev/null') return `path:${fd.target}`;
  return undefined;
}

interface StreamIndex {
  /** stream id → processes reading it on stdin */
  readers: Map<string, ProcessInfo[]>;
  /** stream id → processes writing it on stdout/stderr */
  writers: Map<string, ProcessInfo[]>;
}

function streamIndex(s: Snapshot): StreamIndex {
  const readers = new Map<string, ProcessInfo[]>();
  const writers = new Map<string, ProcessInfo[]>();
  const add = (m: Map<string, ProcessInfo[]>, k: string | undefined, p: ProcessInfo) => {
    if (!k) return;
    const l = m.get(k);
    if (l) {
      if (!l.includes(p)) l.push(p);
    } else m.set(k, [p]);
  };
  for (const p of s.processes.values()) {
    add(readers, streamId(p.fds.find((f) => f.fd === 0)), p);
    add(writers, streamId(p.fds.find((f) => f.fd === 1)), p);
    add(writers, streamId(p.fds.find((f) => f.fd === 2)), p);
  }
  return { readers, writers };
}

/**
 * Follows standard streams through pipes/fifos, up (who feeds my stdin) or
 * down (who reads my stdout), and returns the first process on the way that
 * holds a connected inet socket. Bounded depth: pipelines are short.
 */
function networkAlongPipes(start: ProcessInfo, dir: 'up' | 'down', idx: StreamIndex, maxDepth = 4): { via: ProcessInfo; socket: SocketInfo } | undefined {
  const seen = new Set<number>([start.pid]);
  let frontier = [start];
  for (let depth = 0; depth < maxDepth && frontier.length; depth++) {
    const next: ProcessInfo[] = [];
    for (const p of frontier) {
      const ids = dir === 'up' ? [streamId(p.fds.find((f) => f.fd === 0))] : [1, 2].map((n) => streamId(p.fds.find((f) => f.fd === n)));
      for (const id of ids) {
        if (!id) continue;
        for (const q of (dir === 'up' ? idx.writers : idx.readers).get(id) ?? []) {
          if (seen.has(q.pid)) continue;
          seen.add(q.pid);
          const c = connectedFds(q)[0];
          if (c) return { via: q, socket: c.socket };
          next.push(q);
        }
      }
    }
    frontier = next;
  }
  return undefined;
}

function behavioural(current: Snapshot, make: ReturnType<typeof eventFactory>): ThreatEvent[] {
  const events: ThreatEvent[] = [];
  const children = childrenIndex(current);
  let streams: StreamIndex | undefined;
  for (const p of current.processes.values()) {
    const stdio = networkStdio(p);
    if (stdio.length) {
      const fdsOn = (inode: number) => stdio.filter((f) => f.inode === inode).map((f) => f.fd);
      const first = stdio[0] as FdInfo & { socket: SocketInfo };
      const socket = first.socket;
      const stdin = stdio.find((f) => f.fd === 0);
      const out = stdio.find((f) => f.fd === 1 || f.fd === 2);
      const shell = isShellOrInterpreter(p);
      const ancestorHolder = lineage(current, p.pid)
        .slice(1)
        .find((a) => a.fds.some((f) => f.inode !== undefined && stdio.some((s) => s.inode === f.inode)) && (isShellOrInterpreter(a) || networkStdio(a).length > 0));
      let rule: string | undefined;
      let why = '';
      if (shell) {
        rule = 'shell-stdio-network';
        why = `a shell or interpreter with ${streamNames(stdio)} on a network connection`;
      } else if (stdin && out) {
        rule = 'stdio-redirected-network';
        why = `stdin and ${out.fd === 1 ? 'stdout' : 'stderr'} on a network connection: an interactive session driven from the network, whatever the program is called`;
      } else if (ancestorHolder) {
        rule = 'inherited-network-stdio';
        why = `${streamNames(stdio)} on a network connection handed down by ${displaySafe(ancestorHolder.comm, 32)} (pid ${ancestorHolder.pid})`;
      }
      const level: Severity = rule ? 'critical' : 'warning';
      if (!rule) {
        rule = 'stdio-network';
        why = `${streamNames(stdio)} on a network connection`;
      }
      const remote = formatEndpoint(socket.remote.address, socket.remote.port);
      events.push(
        make({
          level,
          category: 'reverse_shell',
          title: level === 'critical' ? 'Reverse shell: standard streams connected to the network' : 'Standard stream connected to the network',
          description: `${describeProcess(p)} — ${why}, ${socket.proto} to ${remote}. Chain: ${describeLineage(current, p.pid)}.`,
          evidence: {
            process: processEvidence(current, p),
            network: networkEvidence(socket, fdsOn(socket.inode)),
            rule: `${ID}/${rule}`,
            key: `${processKey(p)}:${socket.inode}`,
          },
        }),
      );
      continue;
    }

    // Pipes: only for processes that read or write a pipe/fifo on stdio.
    const in0 = streamId(p.fds.find((f) => f.fd === 0));
    if (!in0) continue;
    streams ??= streamIndex(current);
    const up = networkAlongPipes(p, 'up', streams);
    if (!up) continue;
    const down = networkAlongPipes(p, 'down', streams);
    if (!down) continue;
    const shell = isShellOrInterpreter(p);
    const spawns = (children.get(p.pid) ?? []).length > 0;
    const level: Severity = shell || spawns ? 'critical' : 'warning';
    const remote = formatEndpoint(up.socket.remote.address, up.socket.remote.port);
    events.push(
      make({
        level,
        category: 'reverse_shell',
        title: level === 'critical' ? 'Reverse shell: shell fed from and feeding the network through pipes' : 'Process relaying between network connections through pipes',
        description:
          `${describeProcess(p)} — ${shell ? 'a shell or interpreter' : spawns ? 'a process running commands' : 'a process'} whose input comes from ` +
          `${displaySafe(up.via.comm, 32)} (pid ${up.via.pid}) and whose output goes to ${displaySafe(down.via.comm, 32)} (pid ${down.via.pid}), ` +
          `both on the network (${up.socket.proto} to ${remote}). Chain: ${describeLineage(current, p.pid)}.`,
        evidence: {
          process: processEvidence(current, p),
          network: networkEvidence(up.socket),
          rule: `${ID}/shell-piped-to-network`,
          key: `${processKey(p)}:${up.socket.inode}`,
        },
      }),
    );
  }
  return events;
}

function streamNames(fds: FdInfo[]): string {
  const n = [...new Set(fds.map((f) => f.fd))].sort().map((fd) => ['stdin', 'stdout', 'stderr'][fd] ?? `fd ${fd}`);
  return n.length > 1 ? `${n.slice(0, -1).join(', ')} and ${n[n.length - 1]}` : (n[0] ?? '');
}

// ── command-line patterns ───────────────────────────────────────────────────

export interface OneLinerMatch {
  family: string;
  rule: string;
}

/** The code a shell or interpreter was given inline (-c, -e, -r, -E), else the whole argv joined. */
function inlineText(argv: readonly string[]): string {
  const joined = argv.join(' ');
  return joined.length > 8192 ? joined.slice(0, 8192) : joined;
}

const NC = /^(nc|ncat|netcat|nc\.traditional|nc\.openbsd|busybox)$/;
const PY = /^(python[0-9.]*|pypy[0-9.]*)$/;
const SHELL_IN_TEXT = /(\/bin\/|\b)(ba|da|z|k|c|tc|a)?sh\b/;

/**
 * Matches the known reverse-shell one-liner families on a process's argv.
 * Each needs a network indicator beside the shell part, so `bash -i` in tmux or
 * `grep -r /dev/tcp .` (searching code for the pattern) do not match.
 */
export function matchOneLiner(p: ProcessInfo): OneLinerMatch | undefined {
  const text = inlineText(p.argv);
  if (!text) return undefined;
  const shellish = isShell(p) || p.argv.includes('-c');
  // bash's /dev/tcp/HOST/PORT redirections (exec 3<>/dev/tcp/…, >& /dev/tcp/…, 0</dev/udp/…).
  if (shellish && /[<>]&?\s*\/dev\/(tcp|udp)\/[^/\s]+\/\d+/.test(text)) return { family: 'bash /dev/tcp', rule: 'dev-tcp' };
  // netcat with a program to run.
  if (hasName(p, NC) && p.argv.some((a) => /^-[a-zA-Z]*[ec]$/.test(a) || /^--(sh-|lua-)?exec(=|$)/.test(a))) return { family: 'netcat -e', rule: 'netcat-exec' };
  if (shellish && /\b(nc|ncat|netcat)(\.\w+)?\s[^|;&\n]*\s(-[a-zA-Z]*[ec]\s|--(sh-|lua-)?exec\b)/.test(text)) return { family: 'netcat -e', rule: 'netcat-exec' };
  // socat joining a network address to a program.
  if ((hasName(p, /^socat$/) || (shellish && /\bsocat\b/.test(text))) && /\b(exec|system):/i.test(text) && /\b(tcp[46]?(-connect|-listen)?|udp[46]?(-connect|-listen)?|openssl(-connect|-listen)?|ssl):/i.test(text)) {
    return { family: 'socat exec', rule: 'socat-exec' };
  }
  // Interpreters given inline code that opens a socket AND wires a shell or process to it.
  if ((hasName(p, PY) || (shellish && /\bpython[0-9.]*\s+-c\b/.test(text))) && /\bsocket\b/.test(text) && /(dup2|pty\.spawn|subprocess|os\.system|os\.popen|\/bin\/(ba)?sh|os\.exec)/.test(text)) {
    return { family: 'python socket', rule: 'python-socket' };
  }
  if ((hasName(p, /^perl[0-9.]*$/) || (shellish && /\bperl\s+-/.test(text))) && /(\bsocket\b|IO::Socket|-MIO\b)/i.test(text) && /(exec|system|open\s*\(\s*STD(IN|OUT)|\/bin\/(ba)?sh|STDIN->fdopen)/.test(text)) {
    return { family: 'perl socket', rule: 'perl-socket' };
  }
  if ((hasName(p, /^ruby[0-9.]*$/) || (shellish && /\bruby\s+-/.test(text))) && /(-rsocket\b|TCPSocket|Socket\.new)/.test(text) && /(exec|spawn|system|IO\.popen|\/bin\/(ba)?sh|`)/.test(text)) {
    return { family: 'ruby socket', rule: 'ruby-socket' };
  }
  if ((hasName(p, /^php[0-9.]*$/) || (shellish && /\bphp\s+-r\b/.test(text))) && /(fsockopen|socket_create|stream_socket_client)/.test(text) && /(exec|shell_exec|system|passthru|proc_open|popen|\/bin\/(ba)?sh)/.test(text)) {
    return { family: 'php fsockopen', rule: 'php-socket' };
  }
  if ((hasName(p, /^(node|nodejs|deno|bun)$/) || (shellish && /\bnode\s+-e\b/.test(text))) && /(net\.Socket|net\.connect|createConnection)/.test(text) && /(child_process|spawn\(|exec\()/.test(text)) {
    return { family: 'node socket', rule: 'node-socket' };
  }
  if ((hasName(p, /^lua[0-9.]*$/) || (shellish && /\blua\s+-e\b/.test(text))) && /socket/.test(text) && /(os\.execute|io\.popen)/.test(text)) {
    return { family: 'lua socket', rule: 'lua-socket' };
  }
  if (/\/inet\/(tcp|udp)\/\d+\//.test(text) && (hasName(p, /^(g|m|n)?awk$/) || (shellish && /\b(g|m|n)?awk\b/.test(text)))) {
    return { family: 'awk /inet', rule: 'awk-inet' };
  }
  if (shellish && /\b(mkfifo|mknod\s+\S+\s+p)\b/.test(text) && /\b(nc|ncat|netcat|telnet|socat|openssl\s+s_client)\b/.test(text) && SHELL_IN_TEXT.test(text.replace(/^\S*sh\s+-c\s+/, ''))) {
    return { family: 'mkfifo pipe', rule: 'mkfifo-pipe' };
  }
  if (shellish && (/openssl\s+s_client[^|]*\|\s*(\/bin\/)?(ba|da|z)?sh\b/.test(text) || /telnet\s+\S+\s+\d+\s*\|\s*(\/bin\/)?(ba|da|z)?sh\b/.test(text))) {
    return { family: 'openssl/telnet pipe', rule: 'tls-telnet-pipe' };
  }
  if ((hasName(p, /^(pwsh|powershell)$/) || (shellish && /\b(pwsh|powershell)\b/i.test(text))) && /(System\.Net\.Sockets|TCPClient)/i.test(text)) {
    return { family: 'powershell socket', rule: 'powershell-socket' };
  }
  return undefined;
}

/**
 * Where a one-liner says it connects, when it says so plainly: seen before
 * the connection exists (a peek at the exec), it is the only place the
 * remote address is. `/dev/tcp/H/P`, `nc H P`, `socat … tcp:H:P`,
 * `/inet/tcp/0/H/P`, `("H", P)` tuples and `$i="H";$p=P;` perl, else the
 * first IPv4 address followed by a port.
 */
export function destinationOf(text: string): { proto: 'tcp' | 'udp'; remote: string; port: number } | undefined {
  const ip = String.raw`(\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9.-]+\.[A-Za-z]{2,}|localhost)`;
  const tries: Array<[RegExp, 'tcp' | 'udp' | undefined]> = [
    [new RegExp(String.raw`/dev/(tcp|udp)/${ip}/(\d{1,5})`), undefined],
    [new RegExp(String.raw`/inet/(tcp|udp)/\d+/${ip}/(\d{1,5})`), undefined],
    [new RegExp(String.raw`\b(tcp|udp)[46]?(?:-connect)?:${ip}:(\d{1,5})`, 'i'), undefined],
    [new RegExp(String.raw`\b(?:nc|ncat|netcat)(?:\.\w+)?\s+(?:-[a-zA-Z]+\s+(?:\S+\s+)?)*${ip}\s+(\d{1,5})\b`), 'tcp'],
    [new RegExp(String.raw`["']${ip}["']\s*,\s*(\d{1,5})`), 'tcp'],
    [new RegExp(String.raw`\$\w+\s*=\s*["']${ip}["']\s*;\s*\$\w+\s*=\s*(\d{1,5})`), 'tcp'],
    [new RegExp(String.raw`\b(\d{1,3}(?:\.\d{1,3}){3})\D{1,12}?(\d{2,5})\b`), 'tcp'],
  ];
  for (const [re, fixed] of tries) {
    const m = re.exec(text);
    if (!m) continue;
    const [proto, host, port] = fixed ? [fixed, m[1]!, m[2]!] : [m[1]!.toLowerCase() as 'tcp' | 'udp', m[2]!, m[3]!];
    const n = Number(port);
    if (n > 0 && n < 65536) return { proto: proto === 'udp' ? 'udp' : 'tcp', remote: host, port: n };
  }
  return undefined;
}

/** Memoised by argv identity: the collector keeps a process's argv array while it is unchanged. */
const oneLinerMemo = new WeakMap<readonly string[], OneLinerMatch | null>();
function cachedOneLiner(p: ProcessInfo): OneLinerMatch | undefined {
  let m = oneLinerMemo.get(p.argv);
  if (m === undefined) {
    m = matchOneLiner(p) ?? null;
    oneLinerMemo.set(p.argv, m);
  }
  return m ?? undefined;
}

function oneLiners(current: Snapshot, ctx: DetectorContext, make: ReturnType<typeof eventFactory>, already: Set<number>): ThreatEvent[] {
  const mode = ctx.thresholds.reverseShellOneLiners;
  if (mode === 'off') return [];
  const level: Severity = mode === 'warn' ? 'warning' : 'critical';
  const events: ThreatEvent[] = [];
  for (const p of current.processes.values()) {
    const m = cachedOneLiner(p);
    if (!m) continue;
    // A process already reported by behaviour gets one event, the stronger one.
    if (already.has(p.pid) && level === 'critical') continue;
    const sock = p.fds.find((f) => f.socket && isConnected(f.socket))?.socket;
    const ev = make({
      level,
      category: 'reverse_shell',
      title: 'Reverse shell command line',
      description: `${describeProcess(p)} — matches the ${m.family} reverse-shell pattern. Chain: ${describeLineage(current, p.pid)}.`,
      evidence: {
        process: processEvidence(current, p),
        rule: `${ID}/one-liner/${m.rule}`,
        key: `${processKey(p)}:${m.rule}`,
      },
    });
    if (sock) ev.evidence.network = networkEvidence(sock);
    else {
      const dest = destinationOf(inlineText(p.argv));
      // Not connected (yet): the address the command names, marked as such.
      if (dest) ev.evidence.network = { proto: dest.proto, remote: dest.remote, port: dest.port, local: '', state: 'NAMED_IN_COMMAND' };
    }
    events.push(ev);
  }
  return events;
}

export const reverseShellDetector: Detector = {
  id: ID,
  title: 'Reverse shell',
  severity: 'critical',
  mitre: MITRE,
  exceptions: EXCEPTIONS,
  evaluate(current, _previous, ctx) {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const behaviour = behavioural(current, make);
    const critical = new Set(behaviour.filter((e) => e.level === 'critical').map((e) => e.evidence.process?.pid ?? -1));
    return [...behaviour, ...oneLiners(current, ctx, make, critical)];
  },
};
