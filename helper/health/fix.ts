/**
 * `coi health --fix`: fixes what is safe to fix without asking — starting the
 * guard, delegating the user's ids for raw.idmap, enabling IP forwarding on a
 * NAT bridge, removing leftovers of ours — and says what it did, or why it did
 * not. Anything that changes the user's own setup (profiles, firewalld zones,
 * group membership, packages) is only described, never done.
 */
import { promises as fs } from 'node:fs';
import { toCoiError } from '../errors';
import { GuardClient } from '../guard/client';
import { startGuardDaemon } from '../guard/daemon';
import { guardSocketPath } from '../guard/paths';
import { delegateId } from '../guard/subid';
import { run } from '../host/run';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { GuardAllowIdmap } from '../protocol/methods';
import type { HealthFacts } from './facts';
import type { HealthFix, HealthReport } from './schema';

export interface FixOptions {
  env: NodeJS.ProcessEnv;
  incus: IncusClient;
  log: Log;
  dryRun: boolean;
  /** The coi script, to start the guard from. */
  script?: string;
}

interface Fixer {
  check: string;
  /** What it would do, or undefined when there is nothing for it to do. */
  plan(f: HealthFacts): string | undefined;
  /** Why it cannot, or undefined when it can. */
  cannot?(f: HealthFacts): string | undefined;
  apply(f: HealthFacts, o: FixOptions): Promise<string>;
}

const needsRoot = (what: string) => (f: HealthFacts) => (f.user.root ? undefined : `${what} needs root: run sudo coi health --fix`);

export const FIXERS: Fixer[] = [
  {
    check: 'guard',
    plan: (f) => (f.guard.reachable ? undefined : 'start the guard'),
    cannot: needsRoot('starting the guard'),
    async apply(_f, o) {
      const r = await startGuardDaemon(o.env, o.script);
      return r.alreadyRunning ? `the guard was already running (pid ${r.pid})` : `started the guard (pid ${r.pid}, log ${r.logFile})`;
    },
  },
  {
    check: 'id_delegation',
    plan: (f) => (f.idmap.needed && !(f.idmap.uidDelegated && f.idmap.gidDelegated) ? `delegate uid ${f.idmap.uid} and gid ${f.idmap.gid} to root in /etc/subuid and /etc/subgid` : undefined),
    cannot: (f) => (f.user.root || f.guard.reachable ? undefined : 'delegating ids needs root or a running guard: run sudo coi health --fix'),
    async apply(f, o) {
      if (f.user.root) {
        const a = await delegateId('/etc/subuid', f.idmap.uid);
        const b = await delegateId('/etc/subgid', f.idmap.gid);
        return a || b ? `delegated uid ${f.idmap.uid} and gid ${f.idmap.gid}` : 'already delegated';
      }
      const g = new GuardClient({ socketPath: guardSocketPath(o.env) });
      try {
        await g.connect({ timeoutMs: 3_000 });
        await g.request(GuardAllowIdmap, { uid: f.idmap.uid, gid: f.idmap.gid });
        return `the guard delegated uid ${f.idmap.uid} and gid ${f.idmap.gid}`;
      } finally {
        g.close();
      }
    },
  },
  {
    check: 'ip_forwarding',
    plan: (f) => (f.bridge.exists && f.bridge.mode !== 'dead-end' && f.sysctl.ipForward === '0' ? 'enable net.ipv4.ip_forward' : undefined),
    cannot: needsRoot('enabling forwarding'),
    async apply() {
      await fs.writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
      return 'enabled net.ipv4.ip_forward (until reboot; Incus sets it again when it starts)';
    },
  },
  {
    check: 'orphaned_resources',
    plan: (f) => {
      const o = f.orphans;
      const n = o.sandboxes.length + o.veths.length + o.locks.length;
      return n ? `remove ${[...o.sandboxes.map((s) => s.name), ...o.veths, ...o.locks].join(', ')}` : undefined;
    },
    cannot: (f) => (f.orphans.veths.length && !f.user.root ? 'removing host interfaces needs root: run sudo coi health --fix' : undefined),
    async apply(f, o) {
      const done: string[] = [];
      for (const s of f.orphans.sandboxes) {
        await o.incus.deleteInstance(s.name, { force: true });
        done.push(`deleted ${s.name}`);
      }
      for (const v of f.orphans.veths) {
        await run('ip', ['link', 'delete', v]);
        done.push(`deleted interface ${v}`);
      }
      for (const l of f.orphans.locks) {
        await fs.rm(l, { force: true });
        done.push(`removed ${l}`);
      }
      return done.join('; ');
    },
  },
];

/**
 * Applies (or, with dryRun, lists) the fixes for the checks that are not ok;
 * a check no fixer handles is listed as skipped, with its remedy.
 */
export async function applyFixes(report: HealthReport, f: HealthFacts, o: FixOptions): Promise<HealthFix[]> {
  const out: HealthFix[] = [];
  const handled = new Set<string>();
  for (const fx of FIXERS) {
    const c = report.checks[fx.check];
    if (!c || c.status === 'ok') continue;
    const what = fx.plan(f);
    if (!what) continue;
    handled.add(fx.check);
    const why = fx.cannot?.(f);
    if (why) out.push({ check: fx.check, action: why, outcome: 'skipped' });
    else if (o.dryRun) out.push({ check: fx.check, action: `would ${what}`, outcome: 'dry-run' });
    else {
      try {
        out.push({ check: fx.check, action: await fx.apply(f, o), outcome: 'fixed' });
      } catch (e) {
        out.push({ check: fx.check, action: `could not ${what}: ${toCoiError(e).message}`, outcome: 'failed' });
      }
    }
  }
  for (const [key, c] of Object.entries(report.checks)) {
    if (c.status === 'ok' || handled.has(key)) continue;
    const r = c.remedy;
    out.push({ check: key, action: `not changed automatically${r ? `; to fix it: ${r.title}${r.shell ? `: ${r.shell}` : ''}` : ''}`, outcome: 'skipped' });
  }
  return out;
}
