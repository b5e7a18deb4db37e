/**
 * Credential and environment scanning: WARNING, HIGH when the command that
 * does it also has a network connection (the scan is being shipped out).
 *
 * - proc-environ: reading other processes' environments (`cat /proc/*\/environ`,
 *   strings/xxd/xargs on them), seen on the command line or as an open fd on
 *   /proc/<other pid>/environ;
 * - env-grep: the environment dumped into a filter for secrets
 *   (`env | grep -i token`), seen in a shell's command string or as the pipe
 *   between an `env`/`printenv` process and a grep-like reader;
 * - inline-env-secrets: interpreter one-liners walking os.environ /
 *   process.env for key/token/secret names;
 * - credential-files: searching for or reading private keys and cloud/tool
 *   credential files (id_rsa, .aws/credentials, .netrc, .git-credentials,
 *   .docker/config.json, .kube/config, gcloud tokens, "BEGIN … PRIVATE KEY").
 *
 * "The same command" is the subtree under the nearest shell that ran the
 * scan (e.g. `sh -c 'cat ~/.aws/credentials | curl -d @- …'`), never the
 * agent process above it, which always has connections of its own.
 */
import { childrenIndex, isConnected, lineage, lineageEvidence, ProcessInfo, processKey, Snapshot, subtree } from '../model';
import { formatEndpoint, isLoopback } from '../ip';
import { baseName } from '../procfs';
import { describeLineage, describeProcess, displaySafe, eventFactory, hasName, isShell, networkEvidence, processEvidence } from './common';
import type { Detector, ProcessEvidence, ThreatEvent } from './types';

const ID = 'credential-scan';
const MITRE = ['T1552', 'T1552.001', 'T1552.004', 'T1082'];

const SECRET_WORDS = /(key|token|secret|passw|pwd|credential|cred|auth|api|bearer|session|cookie|private)/i;
const READERS = /^(cat|tac|strings|xxd|hexdump|od|head|tail|less|more|grep|egrep|fgrep|rg|ag|ack|awk|gawk|mawk|sed|tr|xargs|base64|base32|cut|sort|uniq|nl|cp|dd|tar|zip|gzip|curl|wget|scp|rsync|nc|ncat|python[0-9.]*|perl|ruby|node)$/;
const SEARCHERS = /^(find|locate|mlocate|plocate|fd|fdfind|grep|egrep|fgrep|rg|ag|ack)$/;
const FILTERS = /^(grep|egrep|fgrep|rg|ag|ack|awk|gawk|mawk|sed)$/;

const ENVIRON_ARG = /^\/proc\/(\*|\d+|self|\[0-9\]\*?|\{[^}]*\})\/environ$/;
const ENVIRON_TEXT = /\b(cat|strings|xxd|hexdump|od|head|tail|less|more|grep|egrep|rg|awk|sed|tr|xargs|base64)\b[^|;&\n]*\s\/proc\/(\*|\d+|self|\[0-9\]\*?)\/environ\b/;

/**
 * Paths and name patterns of private keys and credential stores. Public keys
 * (.pub) are fine; a project's own .npmrc is registry config, a home one holds tokens.
 */
const CREDENTIAL_PATH = /(^|[/*'"\s])(id_(rsa|dsa|ecdsa|ed25519|ecdsa_sk|ed25519_sk)(?!\.pub)\b|\.aws\/credentials|\.netrc\b|\.git-credentials\b|\.docker\/config\.json|\.kube\/config\b|\.config\/gcloud\/(credentials\.db|access_tokens\.db|application_default_credentials\.json|legacy_credentials)|\.azure\/(accessTokens\.json|msal_token_cache)|(\/root|\/home\/[^/\s]+|~)\/\.(npmrc|pypirc)\b|\.vault-token\b|\.config\/gh\/hosts\.yml|\.ssh\/?($|\s)|BEGIN (RSA |OPENSSH |EC |DSA |ENCRYPTED )?PRIVATE KEY|\*\.(pem|key|p12|pfx|kdbx)\b)/;

const ENV_GREP_TEXT = /\b(env|printenv|export\s+-p|declare\s+-x|set)\s*\|[^;&\n]*\b(grep|egrep|fgrep|rg|awk|sed)\b([^|;&\n]*)/;
const INLINE_ENV = /(os\.environ|os\.getenv|process\.env|ENV\[|\$ENV\{|getenv\(|environ\[)/;

const EXCEPTIONS = [
  { name: 'public-keys', description: '*.pub files are public keys and not secrets.' },
  { name: 'env-as-launcher', description: '`env NAME=value prog` and `#!/usr/bin/env node` run a program; only a bare env/printenv dump counts.' },
  { name: 'own-environ', description: 'A process reading its own /proc/<pid>/environ is not scanning others.' },
];

interface Hit {
  rule: string;
  title: string;
  why: string;
  paths?: string[];
}

function inlineCode(argv: readonly string[]): string {
  const j = argv.join(' ');
  return j.length > 8192 ? j.slice(0, 8192) : j;
}

/** The scan rules that need only the process itself (argv, open fds). */
export function matchCredentialScan(p: ProcessInfo): Hit | undefined {
  const text = inlineCode(p.argv);
  const args = p.argv.slice(1);
  const shellish = isShell(p) || p.argv.includes('-c');

  const environArgs = args.filter((a) => ENVIRON_ARG.test(a) && !a.startsWith(`/proc/${p.nsPid ?? -1}/`) && a !== '/proc/self/environ');
  if (environArgs.length && hasName(p, READERS)) {
    return { rule: 'proc-environ', title: 'Reading other processes\' environments', why: 'reads /proc/*/environ, where other processes keep their secrets', paths: environArgs.slice(0, 8) };
  }
  if (shellish && ENVIRON_TEXT.test(text)) {
    return { rule: 'proc-environ', title: 'Reading other processes\' environments', why: 'a shell command reading /proc/*/environ' };
  }
  const envFd = p.fds.find((f) => f.kind === 'file' && /^\/proc\/\d+\/environ$/.test(f.target) && f.target !== `/proc/${p.nsPid ?? -1}/environ`);
  if (envFd) {
    return { rule: 'proc-environ', title: 'Reading other processes\' environments', why: `has ${envFd.target} open`, paths: [envFd.target] };
  }

  if (shellish) {
    const m = ENV_GREP_TEXT.exec(text);
    if (m && SECRET_WORDS.test(m[3] ?? '')) {
      return { rule: 'env-grep', title: 'Environment searched for secrets', why: 'dumps the environment into a filter for key/token/secret names' };
    }
  }
  if (hasName(p, /^(python[0-9.]*|perl|ruby|node|php|lua)$/) && p.argv.some((a) => /^-(c|e|E|r)$/.test(a)) && INLINE_ENV.test(text) && SECRET_WORDS.test(text.replace(INLINE_ENV, ''))) {
    return { rule: 'inline-env-secrets', title: 'Environment searched for secrets', why: 'inline code walking the environment for key/token/secret names' };
  }

  const credArgs = args.filter((a) => CREDENTIAL_PATH.test(a));
  if (credArgs.length && (hasName(p, SEARCHERS) || hasName(p, READERS))) {
    return { rule: 'credential-files', title: 'Searching for or reading credential files', why: 'private keys or cloud/tool credentials named on the command line', paths: credArgs.slice(0, 8) };
  }
  if (shellish) {
    const cmd = p.argv[p.argv.indexOf('-c') + 1] ?? '';
    if (/\b(find|locate|grep|egrep|rg|ag|cat|strings|head|tail|cp|tar|base64|xxd|curl)\b/.test(cmd) && CREDENTIAL_PATH.test(cmd)) {
      return { rule: 'credential-files', title: 'Searching for or reading credential files', why: 'a shell command naming private keys or credential files' };
    }
  }
  return undefined;
}

/** `env | grep -i token` as processes: a bare env/printenv whose stdout pipe is a grep-like reader's stdin. */
function envPipeHits(current: Snapshot): Map<number, Hit> {
  const hits = new Map<number, Hit>();
  const readersByPipe = new Map<number, ProcessInfo[]>();
  for (const p of current.processes.values()) {
    const in0 = p.fds.find((f) => f.fd === 0 && f.kind === 'pipe');
    if (in0?.inode !== undefined && hasName(p, FILTERS)) {
      const l = readersByPipe.get(in0.inode);
      if (l) l.push(p);
      else readersByPipe.set(in0.inode, [p]);
    }
  }
  if (!readersByPipe.size) return hits;
  for (const p of current.processes.values()) {
    const a0 = baseName(p.argv[0] ?? p.comm);
    const bare = (a0 === 'env' && p.argv.slice(1).every((a) => a.startsWith('-'))) || a0 === 'printenv' || (p.comm === 'printenv' && p.argv.length <= 1);
    if (!bare) continue;
    const out = p.fds.find((f) => f.fd === 1 && f.kind === 'pipe');
    if (out?.inode === undefined) continue;
    for (const r of readersByPipe.get(out.inode) ?? []) {
      if (r.argv.slice(1).some((a) => SECRET_WORDS.test(a))) {
        hits.set(r.pid, { rule: 'env-grep', title: 'Environment searched for secrets', why: `reads the output of ${p.comm} (pid ${p.pid}) looking for key/token/secret names` });
      }
    }
  }
  return hits;
}

/** The scanning command: the subtree of the nearest shell above (or at) the process. */
function commandGroup(current: Snapshot, p: ProcessInfo, index: Map<number, number[]>): ProcessInfo[] {
  const chain = lineage(current, p.pid, 8);
  const root = chain.find((a) => isShell(a)) ?? p;
  return subtree(current, root.pid, index, 256);
}

export const credentialScanDetector: Detector = {
  id: ID,
  title: 'Credential and environment scanning',
  severity: 'high',
  mitre: MITRE,
  exceptions: EXCEPTIONS,
  evaluate(current, _previous, ctx): ThreatEvent[] {
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const hits = envPipeHits(current);
    for (const p of current.processes.values()) {
      if (hits.has(p.pid)) continue;
      const h = matchCredentialScan(p);
      if (h) hits.set(p.pid, h);
    }
    if (!hits.size) return [];
    const index = childrenIndex(current);
    const events: ThreatEvent[] = [];
    for (const [pid, h] of hits) {
      const p = current.processes.get(pid);
      if (!p) continue;
      let net: { who: ProcessInfo; socket: NonNullable<ProcessInfo['fds'][number]['socket']> } | undefined;
      for (const q of commandGroup(current, p, index)) {
        const s = q.fds.find((f) => f.socket && isConnected(f.socket) && !isLoopback(f.socket.remote.address))?.socket;
        if (s) {
          net = { who: q, socket: s };
          break;
        }
      }
      const ev = make({
        level: net ? 'high' : 'warning',
        category: 'credential_access',
        title: h.title,
        description:
          `${describeProcess(p)} — ${h.why}` +
          (net ? `; the same command has a network connection (${net.who.comm} pid ${net.who.pid} to ${formatEndpoint(net.socket.remote.address, net.socket.remote.port)})` : '') +
          `. Chain: ${describeLineage(current, p.pid)}.`,
        evidence: {
          process: processEvidence(current, p),
          rule: `${ID}/${h.rule}`,
          // One process reading environments is one finding, whether its command line (here) or
          // the kernel's trace (below, which cannot know the start time of a reader that is gone) saw it first.
          key: h.rule === 'proc-environ' ? `${p.pid}:proc-environ` : `${processKey(p)}:${h.rule}`,
        },
      });
      if (h.paths) ev.evidence.filesystem = { paths: h.paths };
      if (net) ev.evidence.network = networkEvidence(net.socket);
      events.push(ev);
    }
    return events;
  },
};

/**
 * The same finding from the kernel: a process opened /proc/<pid>/environ (the
 * guard's trace filters openat to exactly that). Works for a reader that
 * lived a millisecond: its chain comes from the snapshot when it is still
 * there, else from its parent. Its own environ cannot be told apart here
 * (the trace does not carry the path); a process reading its own via
 * /proc/<own pid>/environ instead of /proc/self is rare.
 */
export const environTraceDetector: Detector = {
  id: ID,
  title: 'Environment read (kernel trace)',
  severity: 'warning',
  mitre: MITRE,
  exceptions: [],
  evaluate(current, _previous, ctx): ThreatEvent[] {
    const acts = (ctx.activity ?? []).filter((a) => a.kind === 'environ-open');
    if (!acts.length) return [];
    const make = eventFactory(current, ctx, { id: ID, mitre: MITRE });
    const out: ThreatEvent[] = [];
    const seen = new Set<number>();
    for (const a of acts) {
      if (seen.has(a.pid)) continue;
      seen.add(a.pid);
      const p = current.processes.get(a.pid);
      const parent = a.ppid !== undefined ? current.processes.get(a.ppid) : p ? current.processes.get(p.ppid) : undefined;
      const who = p ? describeProcess(p) : `${displaySafe(a.comm, 32)} (pid ${a.pid}${a.exe ? `, ${displaySafe(a.exe, 80)}` : ''}, already exited)`;
      const chain = p ? describeLineage(current, p.pid) : [`${displaySafe(a.comm, 32)}[${a.pid}]`, ...(parent ? [describeLineage(current, parent.pid)] : [])].join(' ← ');
      const process: ProcessEvidence = p
        ? processEvidence(current, p)
        : {
            pid: a.pid,
            comm: a.comm,
            ...(a.exe ? { exe: a.exe } : {}),
            argv: [],
            lineage: [{ pid: a.pid, comm: a.comm, argv: [] }, ...(parent ? lineageEvidence(current, parent.pid) : [])],
          };
      out.push(
        make({
          level: 'warning',
          category: 'credential_access',
          title: "Reading other processes' environments",
          description: `${who} — opened a process's /proc/<pid>/environ, where other processes keep their secrets (seen by the kernel). Chain: ${chain}.`,
          evidence: { process, rule: `${ID}/proc-environ-open`, key: `${a.pid}:proc-environ` },
        }),
      );
    }
    return out;
  },
};
