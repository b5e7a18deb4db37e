/**
 * The only code that talks to firewalld (through `firewall-cmd`), for the
 * guard and for `coi health`. What to do is decided in firewalld.ts.
 *
 * The guard keeps the sandbox bridges in a zone that passes their traffic
 * (`FirewalldZoneKeeper`): whenever it sees a firewalld it has not seen yet
 * (a new pid: started, restarted) or a bridge it has not looked at under this
 * firewalld, it asks for the bridge's zone and, where the bridge merely fell
 * into a blocking default zone, binds it to `trusted`, runtime and permanent.
 * Each firewall-cmd call costs about half a second, so nothing is asked while
 * the pid stays the same; a `firewall-cmd --reload` keeps the permanent
 * binding and needs nothing from us.
 */
import { promises as fs } from 'node:fs';
import { toCoiError } from '../../errors';
import { tryRun } from '../../host/run';
import type { Log } from '../../log';
import { BridgeZoneFacts, parseZoneInfo, parseZoneOf, planBridgeZone, TRUSTED_ZONE, ZoneInfo, zoneBlocks } from './firewalld';

export interface FirewallCmdResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}
/** Runs firewall-cmd with these arguments. Rejects only when it cannot be run at all. */
export type FirewallCmdExec = (args: readonly string[]) => Promise<FirewallCmdResult>;

export function firewallCmdExec(binary = 'firewall-cmd'): FirewallCmdExec {
  return (args) => tryRun(binary, [...args], { timeoutMs: 30_000 });
}

/** The pid of a running firewalld, from /proc (no D-Bus needed); undefined when none runs. */
export async function firewalldPid(procDir = '/proc'): Promise<number | undefined> {
  let entries: string[];
  try {
    entries = await fs.readdir(procDir);
  } catch {
    return undefined;
  }
  for (const d of entries) {
    if (!/^\d+$/.test(d)) continue;
    const comm = await fs.readFile(`${procDir}/${d}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'firewalld') return Number(d);
  }
  return undefined;
}

export async function bridgeZoneFacts(cmd: FirewallCmdExec, bridge: string): Promise<BridgeZoneFacts> {
  const [def, rt, perm] = await Promise.all([
    cmd(['--get-default-zone']),
    cmd([`--get-zone-of-interface=${bridge}`]),
    cmd(['--permanent', `--get-zone-of-interface=${bridge}`]),
  ]);
  const defaultZone = def.exitCode === 0 ? def.stdout.trim() : '';
  const runtimeZone = parseZoneOf(rt.stdout, rt.exitCode);
  const permanentZone = parseZoneOf(perm.stdout, perm.exitCode);
  return { bridge, defaultZone, ...(runtimeZone ? { runtimeZone } : {}), ...(permanentZone ? { permanentZone } : {}) };
}

export async function zoneInfo(cmd: FirewallCmdExec, zone: string): Promise<ZoneInfo | undefined> {
  const r = await cmd([`--info-zone=${zone}`]);
  return r.exitCode === 0 ? parseZoneInfo(r.stdout) : undefined;
}

export interface BridgeZoneReport {
  bridge: string;
  zone: string;
  explicit: boolean;
  /** What firewall-cmd calls were made (each an argument list). */
  changed: string[][];
  /** What the zone blocks of sandbox traffic, when it is not trusted. */
  blocks: string[];
}

/** Brings one bridge into a zone that passes sandbox traffic, where that is ours to decide; says what applies now. */
export async function ensureBridgeZone(cmd: FirewallCmdExec, bridge: string): Promise<BridgeZoneReport> {
  const facts = await bridgeZoneFacts(cmd, bridge);
  if (!facts.defaultZone) throw new Error('firewall-cmd --get-default-zone gave no zone (is firewalld answering on D-Bus?)');
  const plan = planBridgeZone(facts);
  for (const args of plan.commands) {
    const r = await cmd(args);
    if (r.exitCode !== 0 && !/ALREADY_ENABLED/.test(r.stderr + r.stdout)) throw new Error(`firewall-cmd ${args.join(' ')}: ${(r.stderr || r.stdout).trim()}`);
  }
  const blocks = plan.zone === TRUSTED_ZONE ? [] : zoneBlocks((await zoneInfo(cmd, plan.zone)) ?? { name: plan.zone, target: 'unknown', interfaces: [], services: [], ports: [], richRules: [] });
  return { bridge, zone: plan.zone, explicit: plan.explicit, changed: plan.commands, blocks };
}

/** The guard's side: keeps the sandbox bridges passable while a firewalld runs. */
export class FirewalldZoneKeeper {
  /** `${pid}:${bridge}` already seen to. */
  private readonly done = new Set<string>();
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly o: {
      cmd: FirewallCmdExec;
      log: Log;
      pid?: () => Promise<number | undefined>;
    },
  ) {}

  /** Sees to the bridges not yet seen to under the running firewalld; resolves when done. Never rejects. */
  check(bridges: Iterable<string>): Promise<void> {
    const list = [...new Set(bridges)].sort();
    const next = this.running.then(() => this.checkNow(list));
    this.running = next;
    return next;
  }

  private async checkNow(bridges: string[]): Promise<void> {
    const pid = await (this.o.pid ?? firewalldPid)();
    if (pid === undefined) {
      this.done.clear();
      return;
    }
    for (const bridge of bridges) {
      const key = `${pid}:${bridge}`;
      if (this.done.has(key)) continue;
      try {
        const r = await ensureBridgeZone(this.o.cmd, bridge);
        this.done.add(key);
        if (r.changed.length > 0) this.o.log.info(`firewalld runs: ${bridge} is now in its "${r.zone}" zone (firewall-cmd ${r.changed.map((c) => c.join(' ')).join('; ')}), so firewalld leaves sandbox traffic to the guard's rules`);
        if (r.blocks.length > 0) this.o.log.warn(`firewalld runs and ${bridge} is in its zone "${r.zone}", which blocks ${r.blocks.join('; ')}; put ${bridge} in the trusted zone (coi health says how)`);
      } catch (e) {
        // Tried again at the next check: firewalld may still be starting.
        this.o.log.warn(`cannot see to firewalld's zone of ${bridge}: ${toCoiError(e).message}`);
      }
    }
  }
}
