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
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoiError, ErrorCodes, toCoiError } from '../../errors';
import { tryRun } from '../../host/run';
import type { Log } from '../../log';
import { BridgeZoneFacts, FirewallCmd, parseZoneInfo, parseZoneOf, planBridgeZone, TRUSTED_ZONE, ZoneInfo, zoneBlocks } from './firewalld';
import {
  diffFirewalld,
  FirewalldNames,
  firewalldNames,
  InstalledFirewalld,
  isCoiObjectName,
  isNothingToDelete,
  liveFirewalld,
  ownerOf,
  planInstall,
  planRemove,
  planSync,
  SandboxFirewalldObjects,
} from './firewalld-policy';

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
  // Read synchronously: a few ms for the whole of /proc, where one await per process took 20-30 ms
  // (more on a loaded host), and every launch's fence waits for this look.
  let entries: string[];
  try {
    entries = readdirSync(procDir);
  } catch {
    return undefined;
  }
  for (const d of entries) {
    if (!/^\d+$/.test(d)) continue;
    let comm = '';
    try {
      comm = readFileSync(`${procDir}/${d}/comm`, 'utf8');
    } catch {
      continue;
    }
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

/**
 * `backend = "firewalld"`: the sandbox's zone and policy (firewalld-policy.ts)
 * written to firewalld's permanent configuration and made live by a reload.
 * firewalld cannot create zones or policies at runtime only, so each install
 * or removal costs a `--reload` (about 2 s here), which also discards runtime
 * changes an administrator did not make permanent: on a host where firewalld
 * owns the rules, everything lives in the permanent configuration anyway.
 */
export interface SandboxPolicyFiles {
  names: FirewalldNames;
  zoneXml: string;
  policyXml: string;
}

function notRunning(why: string): CoiError {
  return new CoiError(ErrorCodes.COMMAND_FAILED, `network.backend = "firewalld", but firewalld is not running (${why}); the sandbox is not started unfenced`, {
    remedy: { title: 'Start firewalld', shell: 'sudo systemctl start firewalld' },
  });
}

/** Refuses, with a remedy, when no firewalld answers or bridged traffic would bypass it. */
export async function assertFirewalldUsable(cmd: FirewallCmdExec, procSys = '/proc/sys'): Promise<void> {
  const state = await cmd(['--state']).catch((e: unknown) => ({ exitCode: -1, stdout: '', stderr: toCoiError(e).message }));
  if (state.exitCode !== 0 || state.stdout.trim() !== 'running') {
    throw notRunning(`firewall-cmd --state: ${(state.stdout + state.stderr).trim() || `exit ${state.exitCode}`}`);
  }
  await assertBridgeNetfilter(procSys);
}

/** Sandboxes and the gateway share one bridge: without br_netfilter, traffic bridged between them never reaches firewalld. */
export async function assertBridgeNetfilter(procSys = '/proc/sys'): Promise<void> {
  for (const f of ['bridge-nf-call-iptables', 'bridge-nf-call-ip6tables']) {
    const v = (await fs.readFile(`${procSys}/net/bridge/${f}`, 'utf8').catch(() => '')).trim();
    if (v !== '1') {
      throw new CoiError(ErrorCodes.COMMAND_FAILED, `network.backend = "firewalld" needs net.bridge.${f} = 1 (it is ${v || 'absent'}): otherwise traffic bridged between sandboxes bypasses firewalld`, {
        remedy: { title: 'Enable br_netfilter', shell: `sudo modprobe br_netfilter && sudo sysctl -w net.bridge.${f}=1` },
      });
    }
  }
}

/** How long a reload whose D-Bus reply timed out may take to finish. */
const RELOAD_GRACE_MS = 120_000;

/**
 * A reload on a loaded host can outlast firewall-cmd's D-Bus reply timeout
 * (25 s) and still complete. firewalld answers one D-Bus call at a time, so
 * a `--state` that answers "running" afterwards means the reload is done.
 */
async function awaitReload(cmd: FirewallCmdExec, out: string): Promise<boolean> {
  if (!/did not receive a reply|timed? ?out/i.test(out)) return false;
  const deadline = Date.now() + RELOAD_GRACE_MS;
  while (Date.now() < deadline) {
    const s = await cmd(['--state']).catch(() => undefined);
    if (s?.exitCode === 0 && s.stdout.trim() === 'running') return true;
    await new Promise((r) => setTimeout(r, 1_000));
  }
  return false;
}

async function runAll(cmd: FirewallCmdExec, plan: readonly FirewallCmd[]): Promise<void> {
  for (const args of plan) {
    const r = await cmd(args);
    const out = `${r.stderr}${r.stdout}`;
    if (r.exitCode !== 0 && args[0] === '--reload' && (await awaitReload(cmd, out))) continue;
    if (r.exitCode !== 0 && !isNothingToDelete(args, out)) {
      throw new CoiError(ErrorCodes.COMMAND_FAILED, `firewall-cmd ${args.join(' ')}: ${out.trim() || `exit ${r.exitCode}`}`);
    }
  }
}

/** Puts a sandbox's zone and policy in place (replacing older ones), permanent and live. */
export async function installSandboxPolicy(cmd: FirewallCmdExec, files: SandboxPolicyFiles): Promise<void> {
  await assertFirewalldUsable(cmd);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'coi-firewalld-'));
  try {
    const zoneFile = path.join(dir, `${files.names.zone}.xml`);
    const policyFile = path.join(dir, `${files.names.policy}.xml`);
    await fs.writeFile(zoneFile, files.zoneXml, { mode: 0o600 });
    await fs.writeFile(policyFile, files.policyXml, { mode: 0o600 });
    await runAll(cmd, planInstall(files.names, zoneFile, policyFile));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Removes a sandbox's zone and policy; nothing to remove is not an error. */
export async function removeSandboxPolicy(cmd: FirewallCmdExec, names: FirewalldNames): Promise<void> {
  await runAll(cmd, planRemove(names));
}

/** The guard's zones and policies of this scope in the permanent configuration, by container. Throws when firewalld does not answer. */
export async function listSandboxPolicies(cmd: FirewallCmdExec, scope: string): Promise<Map<string, InstalledFirewalld>> {
  const out = new Map<string, InstalledFirewalld>();
  const [zones, policies] = await Promise.all([cmd(['--permanent', '--get-zones']), cmd(['--permanent', '--get-policies'])]);
  for (const r of [zones, policies]) {
    // An empty listing from a firewalld still starting would make every object look gone.
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `firewall-cmd cannot list firewalld's zones and policies: ${(r.stderr || r.stdout).trim() || `exit ${r.exitCode}`}`);
  }
  const names = [...zones.stdout.split(/\s+/), ...policies.stdout.split(/\s+/)].filter(isCoiObjectName);
  const versions = new Map<string, Array<string | undefined>>();
  for (const name of names) {
    const kind = name.startsWith('coiz-') ? 'zone' : 'policy';
    const r = await cmd(['--permanent', `--${kind}=${name}`, '--get-short']);
    const owner = r.exitCode === 0 ? ownerOf(r.stdout, scope) : undefined;
    // The names derive from scope and container: one that does not match is not this guard's to touch.
    if (owner === undefined || firewalldNames(owner.container, scope)[kind] !== name) continue;
    const had = out.get(owner.container) ?? { names: firewalldNames(owner.container, scope), zone: false, policy: false };
    had[kind] = true;
    out.set(owner.container, had);
    versions.set(owner.container, [...(versions.get(owner.container) ?? []), owner.version]);
  }
  for (const [c, i] of out) {
    const v = versions.get(c) ?? [];
    if (i.zone && i.policy && v.length === 2 && v[0] !== undefined && v[0] === v[1]) i.version = v[0];
  }
  return out;
}

/**
 * The guard's side of `backend = "firewalld"`: keeps firewalld's permanent
 * configuration holding exactly the zones and policies of this scope's
 * firewalld sandboxes (desiredFirewalld), and says whose are live.
 *
 * What is installed is known from a listing, taken whenever firewalld is new
 * (started, restarted: another pid) or a relist is asked for, and from what
 * this guard installed since; between listings nothing is asked of firewalld
 * unless something changed (each firewall-cmd call costs about half a second).
 */
export class FirewalldSandboxes {
  private pid: number | undefined;
  private installed = new Map<string, InstalledFirewalld>();
  /** One listing or sync at a time: each replaces what the other believes is installed. */
  private queue: Promise<unknown> = Promise.resolve();

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.queue.then(f, f);
    this.queue = next.catch(() => undefined);
    return next;
  }

  constructor(
    private readonly o: {
      cmd: FirewallCmdExec;
      scope: string;
      log: Log;
      pid?: () => Promise<number | undefined>;
      procSys?: string;
    },
  ) {}

  /** The containers whose desired objects are live, as of the last sync. */
  live(desired: ReadonlyMap<string, SandboxFirewalldObjects>): Set<string> {
    return this.pid === undefined ? new Set() : liveFirewalld(this.installed, desired);
  }

  /** What this scope has in firewalld, as of the last sync (a listing first when `relist`). */
  objects(opts: { relist?: boolean } = {}): Promise<ReadonlyMap<string, InstalledFirewalld>> {
    return this.serial(async () => {
      if (opts.relist) await this.relist();
      return this.installed;
    });
  }

  private async relist(): Promise<boolean> {
    const pid = await (this.o.pid ?? firewalldPid)();
    if (pid === undefined) {
      this.pid = undefined;
      this.installed = new Map();
      return false;
    }
    try {
      this.installed = await listSandboxPolicies(this.o.cmd, this.o.scope);
      this.pid = pid;
    } catch (e) {
      this.pid = undefined;
      this.installed = new Map();
      throw e;
    }
    return true;
  }

  /**
   * Installs what is missing or outdated and removes what belongs to no
   * desired sandbox, with one reload. Returns the containers whose objects
   * are live, and, when some are not, why (with a remedy). Never throws.
   */
  sync(desired: ReadonlyMap<string, SandboxFirewalldObjects>, opts: { relist?: boolean } = {}): Promise<{ live: Set<string>; error?: CoiError; removed: string[] }> {
    return this.serial(() => this.syncNow(desired, opts));
  }

  private async syncNow(desired: ReadonlyMap<string, SandboxFirewalldObjects>, opts: { relist?: boolean }): Promise<{ live: Set<string>; error?: CoiError; removed: string[] }> {
    try {
      const pid = await (this.o.pid ?? firewalldPid)();
      if (pid === undefined || pid !== this.pid || opts.relist) {
        if (!(await this.relist())) {
          return { live: new Set(), removed: [], ...(desired.size > 0 ? { error: notRunning('no firewalld process') } : {}) };
        }
      }
      // Cheap (a file read), so checked at every sync: with it off, installed objects decide nothing.
      if (desired.size > 0) {
        const off = await assertBridgeNetfilter(this.o.procSys).then(
          () => undefined,
          (e: unknown) => toCoiError(e),
        );
        if (off) return { live: new Set(), error: off, removed: [] };
      }
      const { install, remove } = diffFirewalld(this.installed, desired);
      if (install.length === 0 && remove.length === 0) return { live: this.live(desired), removed: [] };
      await assertFirewalldUsable(this.o.cmd, this.o.procSys);
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'coi-firewalld-'));
      try {
        const files = [];
        for (const c of install) {
          const d = desired.get(c)!;
          const zoneFile = path.join(dir, `${d.names.zone}.xml`);
          const policyFile = path.join(dir, `${d.names.policy}.xml`);
          await fs.writeFile(zoneFile, d.zoneXml, { mode: 0o600 });
          await fs.writeFile(policyFile, d.policyXml, { mode: 0o600 });
          files.push({ container: c, names: d.names, zoneFile, policyFile });
        }
        try {
          await runAll(this.o.cmd, planSync(this.installed, files, remove));
        } catch (e) {
          // Half done: only a listing says what is there now.
          await this.relist().catch(() => undefined);
          throw e;
        }
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
      for (const c of remove) this.installed.delete(c);
      for (const c of install) {
        const d = desired.get(c)!;
        this.installed.set(c, { names: d.names, zone: true, policy: true, version: d.version });
      }
      // Live means in firewalld's runtime, not merely saved: a boot block is lifted on nothing less.
      const rt = await this.o.cmd(['--get-policies']);
      const running = new Set(rt.stdout.split(/\s+/));
      const missing = install.filter((c) => !running.has(desired.get(c)!.names.policy));
      if (rt.exitCode !== 0 || missing.length > 0) {
        // Saved but not running: not live, and replaced at the next sync.
        for (const c of rt.exitCode !== 0 ? install : missing) this.installed.set(c, { names: desired.get(c)!.names, zone: true, policy: true });
        throw new CoiError(ErrorCodes.COMMAND_FAILED, `firewalld saved the policies of ${(rt.exitCode !== 0 ? install : missing).join(', ')} but does not run them after its reload${rt.exitCode !== 0 ? ` (firewall-cmd --get-policies: ${(rt.stderr || rt.stdout).trim()})` : ''}`);
      }
      if (install.length) this.o.log.info(`firewalld: zone and policy of ${install.join(', ')} installed`);
      if (remove.length) this.o.log.info(`firewalld: zone and policy of ${remove.join(', ')} removed (no such sandbox of this backend any more)`);
      return { live: this.live(desired), removed: remove };
    } catch (e) {
      return { live: this.live(desired), error: toCoiError(e), removed: [] };
    }
  }
}
