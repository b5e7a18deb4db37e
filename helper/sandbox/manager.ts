/**
 * Sandboxes: the core the `coi` commands and the JSON-RPC methods both call.
 *
 * A launch runs under the workspace's lock, creates the instance stopped and
 * labelled `phase=creating`, starts it, waits until it answers, starts the tool
 * in tmux, and only then marks it `phase=ready`. Anything that fails after the
 * instance exists deletes it; a coi killed mid-launch leaves a `creating`
 * instance whose launcher is dead, which `coi clean` removes.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { execInteractive, execStream, InteractiveSession } from '../incus/exec-stream';
import type { InstanceFull, Profile } from '../incus/types';
import type { Log } from '../log';
import { getTool } from '../tools/registry';
import { idmapMode, IdmapMode, subidDelegates } from './idmap';
import { LABELS, SandboxInfo, sandboxFromInstance, SandboxKind } from './labels';
import { acquireLock, pidAlive } from './lock';
import { containerName, slotOf, tmuxSession, workspaceHash } from './naming';
import { preparePlaceholders } from './protected';
import { chooseSlot, ExistingSlot } from './slots';
import { buildInstanceSpec, privilegedKeys, WORKSPACE_MOUNT } from './spec';

export interface SandboxSettings {
  prefix: string;
  image: string;
  pool: string;
  bridge: string;
  profile: string;
  persistent: boolean;
  tool: string;
  protectedPaths: string[];
  /** Host variable names copied in. Nothing else of the host environment enters. */
  forwardEnv: string[];
  environment: Record<string, string>;
  mounts: { host: string; container: string; readonly: boolean }[];
  sshForwardAgent: boolean;
  nesting: boolean;
  readyTimeoutSec: number;
  shutdownTimeoutSec: number;
  codeUid: number;
  codeGid: number;
  disableShift: boolean;
  limits?: { config: Record<string, string>; rootDevice: Record<string, string> };
}

export interface HostIdentity {
  uid: number;
  gid: number;
  home: string;
  env: NodeJS.ProcessEnv;
}

export interface OpenRequest {
  workspace: string;
  slot?: number;
  kind: SandboxKind;
  /** Start the tool in tmux (shell) or not (run). */
  startTool: boolean;
}

export interface ManagerDeps {
  incus: IncusClient;
  log: Log;
  host: HostIdentity;
  /** Asks the guard to delegate the user's ids for raw.idmap; undefined when no guard is reachable. */
  allowIdmap?: (uid: number, gid: number) => Promise<void>;
  /** Reports launch progress (stderr on the CLI, a progress notification in VS Code). */
  progress?: (message: string) => void;
}

const SYSTEM_DIRS = ['/', '/bin', '/boot', '/dev', '/etc', '/lib', '/lib64', '/proc', '/root', '/run', '/sbin', '/sys', '/usr', '/var', '/home'];

/** The real, absolute workspace path; refuses what would share too much of the host. */
export function resolveWorkspace(input: string, home: string): string {
  let real: string;
  try {
    real = realpathSync(path.resolve(input));
  } catch {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `workspace ${input} does not exist`);
  }
  if (!statSync(real).isDirectory()) throw new CoiError(ErrorCodes.INVALID_INPUT, `workspace ${real} is not a directory`);
  if (SYSTEM_DIRS.includes(real) || real === path.resolve(home)) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `refusing to share ${real} with a sandbox: it holds far more than a project (keys, credentials, the system)`, {
      remedy: { title: 'Open a project folder instead', shell: 'cd ~/projects/my-app && coi shell' },
    });
  }
  return real;
}

export class SandboxManager {
  constructor(private readonly s: SandboxSettings, private readonly d: ManagerDeps) {}

  get settings(): SandboxSettings {
    return this.s;
  }

  /** Every sandbox, rebuilt from Incus labels. */
  async list(): Promise<SandboxInfo[]> {
    const all = await this.d.incus.listInstances();
    return all
      .filter((i) => i.name.startsWith(this.s.prefix))
      .map(sandboxFromInstance)
      .filter((x): x is SandboxInfo => x !== undefined)
      .sort((a, b) => a.workspace.localeCompare(b.workspace) || a.slot - b.slot);
  }

  async get(name: string): Promise<SandboxInfo> {
    const inst = await this.d.incus.getInstance(name).catch((e: unknown) => {
      if (e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND) throw new CoiError(ErrorCodes.NOT_FOUND, `no sandbox named ${name}`, { remedy: { title: 'List sandboxes', shell: 'coi list' } });
      throw e;
    });
    const info = sandboxFromInstance(inst);
    if (!info) throw new CoiError(ErrorCodes.NOT_FOUND, `${name} is not a COI sandbox (it has no user.coi.managed label); COI leaves it alone`);
    return info;
  }

  /** Launches (or, for persistent sandboxes, restarts) a sandbox for a workspace. */
  async open(req: OpenRequest): Promise<SandboxInfo> {
    const workspace = resolveWorkspace(req.workspace, this.d.host.home);
    const tool = getTool(this.s.tool);
    await this.refusePrivileged();
    const hash = workspaceHash(workspace);
    const lock = await acquireLock(path.join(this.d.host.home, '.coi', 'locks'), hash);
    try {
      const mine = (await this.d.incus.listInstances()).filter((i) => slotOf(this.s.prefix, hash, i.name) !== undefined);
      const existing = new Map<number, ExistingSlot>();
      for (const i of mine) {
        const info = sandboxFromInstance(i);
        existing.set(slotOf(this.s.prefix, hash, i.name)!, { state: info?.state ?? 'error', persistent: info?.persistent ?? false });
      }
      const persistent = req.kind === 'shell' && this.s.persistent;
      const choice = chooseSlot(existing, { ...(req.slot !== undefined ? { requested: req.slot } : {}), persistent });
      if (choice.notice) this.d.progress?.(choice.notice);
      const name = containerName(this.s.prefix, workspace, choice.slot);
      if (choice.reuse) {
        this.d.progress?.(`restarting persistent sandbox ${name}`);
        await this.d.incus.setState(name, 'start', { timeoutMs: 120_000 });
        await this.waitReady(name);
        if (req.startTool) await this.startTool(name, tool.argv, tool.binary);
        return this.get(name);
      }
      return await this.create(name, workspace, choice.slot, req, persistent, tool);
    } finally {
      await lock.release();
    }
  }

  private async create(name: string, workspace: string, slot: number, req: OpenRequest, persistent: boolean, tool: { name: string; argv: string[]; binary: string }): Promise<SandboxInfo> {
    const idmap = idmapMode(this.d.host.uid, this.d.host.gid, this.s.codeUid, this.s.codeGid, this.s.disableShift);
    if (idmap.kind === 'raw') await this.ensureDelegated();
    await preparePlaceholders(workspace, this.s.protectedPaths);
    const sshAgentSocket = this.s.sshForwardAgent ? this.d.host.env.SSH_AUTH_SOCK : undefined;
    const spec = buildInstanceSpec({
      name,
      image: this.s.image,
      pool: this.s.pool,
      bridge: this.s.bridge,
      workspace,
      slot,
      kind: req.kind,
      tool: tool.name,
      persistent,
      session: randomUUID(),
      profile: this.s.profile,
      ownerUid: this.d.host.uid,
      launcherPid: process.pid,
      idmap,
      protectedPaths: this.s.protectedPaths,
      mounts: this.s.mounts,
      nesting: this.s.nesting,
      now: new Date(),
      ...(hostTimezone() ? { timezone: hostTimezone()! } : {}),
      ...(sshAgentSocket ? { sshAgentSocket } : {}),
      ...(this.s.limits ? { limits: this.s.limits } : {}),
    });
    this.d.progress?.(`creating ${name} from ${this.s.image}`);
    try {
      await this.d.incus.createInstance(spec, { timeoutMs: 300_000 });
    } catch (e) {
      throw this.explainCreateError(e);
    }
    try {
      await this.d.incus.setState(name, 'start', { timeoutMs: 120_000 }).catch((e: unknown) => {
        throw this.explainStartError(e, idmap);
      });
      await this.waitReady(name);
      if (req.startTool) await this.startTool(name, tool.argv, tool.binary);
      await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [LABELS.phase]: 'ready' } });
      return await this.get(name);
    } catch (e) {
      this.d.log.debug(`launch of ${name} failed, deleting it: ${toCoiError(e).message}`);
      await this.d.incus.deleteInstance(name, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  private explainCreateError(e: unknown): CoiError {
    const err = toCoiError(e);
    if (/Image .* not found|not found/i.test(err.message) && err.message.includes('image')) {
      return new CoiError(ErrorCodes.NOT_FOUND, `the image ${this.s.image} does not exist`, { remedy: { title: 'Build or import it', shell: 'sudo coi setup' } });
    }
    return err;
  }

  private explainStartError(e: unknown, idmap: IdmapMode): CoiError {
    const err = toCoiError(e);
    if (idmap.kind === 'raw') {
      return new CoiError(err.code, `${err.message} — the workspace is mapped with raw.idmap for uid ${this.d.host.uid}; check that root may delegate it in /etc/subuid and /etc/subgid`, {
        remedy: { title: 'Let set-up delegate your ids', shell: 'sudo coi setup' },
      });
    }
    return err;
  }

  /** raw.idmap works only for ids delegated to root; ask the guard when they are not. */
  private async ensureDelegated(): Promise<void> {
    const { uid, gid } = this.d.host;
    const ok = (f: string, id: number) => subidDelegates(existsSync(f) ? readFileSync(f, 'utf8') : '', id);
    if (ok('/etc/subuid', uid) && ok('/etc/subgid', gid)) return;
    if (!this.d.allowIdmap) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `your uid ${uid} is not delegated for raw.idmap and the guard is not running to do it`, {
        remedy: { title: 'Run set-up', shell: 'sudo coi setup' },
      });
    }
    await this.d.allowIdmap(uid, gid);
  }

  /** Refuses when any profile the sandbox would use is privileged, naming the key and the profile. */
  private async refusePrivileged(): Promise<void> {
    const profile = await this.d.incus.get<Profile>(this.d.incus.url('/1.0/profiles/default'));
    const keys = privilegedKeys(profile.config);
    if (keys.length > 0) {
      throw new CoiError(ErrorCodes.NOT_PERMITTED, `refusing to launch: the Incus profile "default" sets ${keys.map((k) => `${k}=true`).join(', ')}, which would give the agent root on the host`, {
        remedy: { title: 'Unset it', shell: `incus profile unset default ${keys[0]}` },
        details: { profile: 'default', keys },
      });
    }
  }

  /**
   * Waits until the container has finished booting. Starting the tool earlier
   * races boot: systemd-tmpfiles empties /tmp (and with it tmux's socket), and
   * the network may not be configured yet. Images without systemd only need
   * their `code` user.
   */
  private async waitReady(name: string): Promise<void> {
    const deadline = Date.now() + this.s.readyTimeoutSec * 1000;
    let last = '';
    const probe = [
      'sh',
      '-c',
      // Right after start, PID 1 may not have created /run/systemd/system yet: ask what init is.
      'if [ -d /run/systemd/system ] || case "$(readlink -f /sbin/init)" in */systemd) true;; *) false;; esac; then s=$(systemctl is-system-running --wait 2>/dev/null); case "$s" in running|degraded) exit 0;; *) echo "$s"; exit 3;; esac; else test -d /home/code; fi',
    ];
    while (Date.now() < deadline) {
      try {
        const r = await this.d.incus.exec(name, probe, { timeoutMs: Math.max(1_000, deadline - Date.now()) });
        if (r.exitCode === 0) return;
        last = `exit ${r.exitCode}${r.stdout.trim() ? `, system ${r.stdout.trim()}` : ''}`;
      } catch (e) {
        last = toCoiError(e).message;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new CoiError(ErrorCodes.TIMEOUT, `${name} did not become ready within ${this.s.readyTimeoutSec} s (${last})`);
  }

  /** The environment the agent sees: named host variables only, plus literal ones and ours. */
  agentEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const k of this.s.forwardEnv) {
      const v = this.d.host.env[k];
      if (v !== undefined) env[k] = v;
    }
    Object.assign(env, this.s.environment, {
      HOME: '/home/code',
      USER: 'code',
      LOGNAME: 'code',
      SHELL: '/bin/bash',
      TERM: 'xterm-256color',
      LANG: 'C.UTF-8',
      IS_SANDBOX: '1',
      PATH: '/home/code/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    });
    if (this.s.sshForwardAgent && this.d.host.env.SSH_AUTH_SOCK) env.SSH_AUTH_SOCK = '/tmp/ssh-agent.sock';
    return env;
  }

  private async execAsCode(name: string, argv: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}) {
    return this.d.incus.exec(name, argv, { user: this.s.codeUid, group: this.s.codeGid, cwd: WORKSPACE_MOUNT, env: opts.env ?? this.agentEnv(), timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  /**
   * Starts the tool in a detached tmux session. When the tool exits the
   * container powers off, which ends the session (and, for an ephemeral
   * sandbox, the guard then deletes it). Variables reach tmux through the exec
   * environment, never its command line, so they do not show in `ps`.
   */
  private async startTool(name: string, argv: string[], binary: string): Promise<void> {
    const check = await this.execAsCode(name, ['sh', '-c', `command -v ${shellQuote(binary)}`]);
    if (check.exitCode !== 0) {
      throw new CoiError(ErrorCodes.NOT_FOUND, `${binary} is not installed in the image ${this.s.image}`, {
        remedy: { title: 'Build an image with it, or pick another tool', shell: 'coi build' },
      });
    }
    const session = tmuxSession(name);
    const has = await this.execAsCode(name, ['tmux', 'has-session', '-t', session]);
    if (has.exitCode === 0) return;
    const command = `${argv.map(shellQuote).join(' ')}; sudo -n /sbin/poweroff`;
    const r = await this.execAsCode(name, ['tmux', 'new-session', '-d', '-s', session, '-x', '200', '-y', '50', '-c', WORKSPACE_MOUNT, command]);
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `tmux could not start ${binary}: ${r.stderr.trim()}`);
    let last = '';
    for (let i = 0; i < 60; i++) {
      const probe = await this.execAsCode(name, ['tmux', 'has-session', '-t', session]);
      if (probe.exitCode === 0) return;
      last = `exit ${probe.exitCode}: ${probe.stderr.trim()}`;
      this.d.log.debug(`has-session ${session}: ${last}`);
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new CoiError(ErrorCodes.COMMAND_FAILED, `the tmux session of ${name} ended at once (${last}); is ${binary} working in the image?`);
  }

  /** Runs a command in a fresh sandbox, streaming its output; the sandbox is deleted after. */
  async run(workspace: string, argv: string[], io: { stdin?: Readable; stdout: Writable; stderr: Writable; signal?: AbortSignal }): Promise<number> {
    if (argv.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, 'coi run needs a command: coi run -- CMD ARGS… or coi run "shell command"');
    const sb = await this.open({ workspace, kind: 'run', startTool: false });
    try {
      return await execStream(this.d.incus, sb.name, argv, {
        user: this.s.codeUid,
        group: this.s.codeGid,
        cwd: WORKSPACE_MOUNT,
        env: this.agentEnv(),
        stdout: io.stdout,
        stderr: io.stderr,
        ...(io.stdin ? { stdin: io.stdin } : {}),
        ...(io.signal ? { signal: io.signal } : {}),
      });
    } finally {
      await this.d.incus.deleteInstance(sb.name, { force: true }).catch((e: unknown) => this.d.log.warn(`could not delete ${sb.name}: ${toCoiError(e).message}`));
    }
  }

  /** Attaches a terminal to the agent's tmux session. */
  async attach(name: string, io: { input: Readable; output: Writable; width: number; height: number }): Promise<InteractiveSession> {
    const sb = await this.get(name);
    if (sb.state === 'frozen') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is frozen by the guard`, { remedy: { title: 'Review the alert, then resume it', shell: `coi resume ${name}` } });
    if (sb.state !== 'running') throw new CoiError(ErrorCodes.NOT_PERMITTED, `${name} is ${sb.state}`, { remedy: { title: 'Start a session', shell: 'coi shell' } });
    return execInteractive(this.d.incus, name, ['tmux', 'attach-session', '-t', tmuxSession(name)], {
      user: this.s.codeUid,
      group: this.s.codeGid,
      cwd: WORKSPACE_MOUNT,
      env: { ...this.agentEnv(), TERM: sanitizeTerm(this.d.host.env.TERM) },
      width: io.width,
      height: io.height,
      input: io.input,
      output: io.output,
    });
  }

  /**
   * Graceful stop within the timeout, then force. An ephemeral sandbox is then
   * deleted; a persistent one is kept, stopped, for the next `coi shell`
   * (`coi kill` deletes it).
   */
  async shutdown(name: string): Promise<'deleted' | 'stopped'> {
    const sb = await this.get(name);
    const st = await this.d.incus.getState(name);
    if (st.status === 'Frozen') await this.d.incus.setState(name, 'unfreeze').catch(() => undefined);
    if (st.status !== 'Stopped') {
      await this.d.incus.setState(name, 'stop', { timeoutSec: this.s.shutdownTimeoutSec, timeoutMs: (this.s.shutdownTimeoutSec + 30) * 1000 }).catch(async () => {
        await this.d.incus.setState(name, 'stop', { force: true });
      });
    }
    if (sb.persistent) return 'stopped';
    await this.d.incus.deleteInstance(name, { force: true }).catch((e: unknown) => {
      // The guard may have reaped it first, which is the same outcome.
      if (!(e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND)) throw e;
    });
    return 'deleted';
  }

  async kill(name: string): Promise<void> {
    await this.get(name);
    await this.d.incus.deleteInstance(name, { force: true });
  }

  /** Stops the sandbox without deleting it: only for persistent ones (an ephemeral one is deleted when stopped). */
  async persist(name: string): Promise<SandboxInfo> {
    await this.get(name);
    await this.d.incus.run('PATCH', this.d.incus.url(`/1.0/instances/${encodeURIComponent(name)}`), { config: { [LABELS.persistent]: 'true' } });
    return this.get(name);
  }

  async resume(name: string): Promise<SandboxInfo> {
    const sb = await this.get(name);
    if (sb.state !== 'frozen') throw new CoiError(ErrorCodes.INVALID_INPUT, `${name} is ${sb.state}, not frozen`);
    await this.d.incus.setState(name, 'unfreeze');
    return this.get(name);
  }

  /**
   * What `coi clean` removes: stopped ephemeral sandboxes, and half-made ones
   * whose launcher died. Persistent stopped sandboxes are the user's to keep.
   */
  async cleanable(): Promise<{ name: string; reason: string }[]> {
    const out: { name: string; reason: string }[] = [];
    for (const sb of await this.list()) {
      if (sb.phase === 'creating' && !(sb.launcherPid && pidAlive(sb.launcherPid))) out.push({ name: sb.name, reason: 'launch was interrupted' });
      else if (sb.state === 'stopped' && !sb.persistent) out.push({ name: sb.name, reason: 'stopped ephemeral sandbox' });
    }
    return out;
  }

  async clean(dryRun: boolean): Promise<{ name: string; reason: string }[]> {
    const victims = await this.cleanable();
    if (!dryRun) for (const v of victims) await this.d.incus.deleteInstance(v.name, { force: true }).catch(() => undefined);
    return victims;
  }

  async tmuxSend(name: string, text: string): Promise<void> {
    await this.get(name);
    const r = await this.execAsCode(name, ['tmux', 'send-keys', '-t', tmuxSession(name), '-l', text]);
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `tmux send-keys failed: ${r.stderr.trim()}`);
    await this.execAsCode(name, ['tmux', 'send-keys', '-t', tmuxSession(name), 'Enter']);
  }

  async tmuxCapture(name: string): Promise<string> {
    await this.get(name);
    const r = await this.execAsCode(name, ['tmux', 'capture-pane', '-p', '-t', tmuxSession(name)]);
    if (r.exitCode !== 0) throw new CoiError(ErrorCodes.COMMAND_FAILED, `no tmux session in ${name}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  async tmuxList(): Promise<{ name: string; sessions: string[] }[]> {
    const out: { name: string; sessions: string[] }[] = [];
    for (const sb of (await this.list()).filter((s) => s.state === 'running')) {
      const r = await this.execAsCode(sb.name, ['tmux', 'list-sessions', '-F', '#{session_name}']);
      out.push({ name: sb.name, sessions: r.exitCode === 0 ? r.stdout.split('\n').filter(Boolean) : [] });
    }
    return out;
  }

  /** The instance behind a sandbox, for commands that need Incus details. */
  instance(name: string): Promise<InstanceFull> {
    return this.d.incus.getInstance(name);
  }
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Terminals the image may not know (kitty, ghostty…) become xterm-256color. */
export function sanitizeTerm(term: string | undefined): string {
  if (!term || !/^[A-Za-z0-9._+-]{1,64}$/.test(term)) return 'xterm-256color';
  return /^(xterm|screen|tmux|vt100|vt220|linux|rxvt|dumb)(-|$)/.test(term) && !/kitty|ghostty/.test(term) ? term : 'xterm-256color';
}

export function hostTimezone(): string | undefined {
  try {
    const link = readlinkSafe('/etc/localtime');
    const m = link ? /zoneinfo\/(.+)$/.exec(link) : null;
    if (m) return m[1];
    const tz = readFileSync('/etc/timezone', 'utf8').trim();
    return /^[A-Za-z0-9_+\/-]{1,64}$/.test(tz) ? tz : undefined;
  } catch {
    return undefined;
  }
}

function readlinkSafe(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

export function hostIdentity(env: NodeJS.ProcessEnv = process.env): HostIdentity {
  return { uid: process.getuid?.() ?? 1000, gid: process.getgid?.() ?? 1000, home: env.HOME || os.homedir(), env };
}
