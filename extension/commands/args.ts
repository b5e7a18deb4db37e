/**
 * The argument handling of every COI command, as pure functions: which sandbox
 * or snapshot a command acts on (from a tree node or a quick pick), which
 * request it sends with which params, what the quick picks offer, and the
 * command lines the terminals run. No vscode import: the unit tests call these
 * directly, and extension.ts only wires them to the UI.
 */
import {
  SandboxKill,
  SandboxOptionsResult,
  SandboxPersist,
  SandboxResume,
  SandboxShutdown,
  SnapshotBranch,
  SnapshotCreate,
  SnapshotDelete,
  SnapshotRestore,
} from '../../helper/protocol/methods';
import type { RequestDef } from '../../helper/protocol/rpc';
import { shellQuote } from '../setup';
import { baseName, Folder, realOf, Sandbox, sandboxContext, Snapshot, Target } from '../tree/model';

// ── targets ─────────────────────────────────────────────────────────────────

/** The commands that act on one sandbox (a slot). */
export type SandboxCommand = 'coi.attach' | 'coi.shutdown' | 'coi.kill' | 'coi.persist' | 'coi.resume' | 'coi.snapshot.create';
/** The commands that act on one snapshot of a sandbox. */
export type SnapshotCommand = 'coi.snapshot.restore' | 'coi.snapshot.delete' | 'coi.snapshot.branch';

export interface SandboxCommandSpec {
  /** Which slots it applies to; the tree's menus (package.json `when`) say the same. */
  appliesTo: (sb: Pick<Sandbox, 'state' | 'persistent' | 'kind'>) => boolean;
  /** The quick pick's placeholder when no slot was given. */
  placeholder: string;
  /** Said when no slot qualifies. */
  none: string;
}

export const SANDBOX_COMMANDS: Record<SandboxCommand, SandboxCommandSpec> = {
  'coi.attach': { appliesTo: (sb) => sb.state === 'running', placeholder: 'Attach a terminal to which sandbox?', none: 'No running sandbox to attach to.' },
  // A stopped persistent sandbox is already as shut down as it gets.
  'coi.shutdown': { appliesTo: (sb) => !(sb.state === 'stopped' && sb.persistent), placeholder: 'Shut down which sandbox?', none: 'No sandbox to shut down.' },
  'coi.kill': { appliesTo: () => true, placeholder: 'Kill (delete) which sandbox?', none: 'No sandbox to kill.' },
  'coi.persist': { appliesTo: (sb) => !sb.persistent, placeholder: 'Keep which sandbox when it stops?', none: 'No ephemeral sandbox to make persistent.' },
  'coi.resume': { appliesTo: (sb) => sb.state === 'frozen', placeholder: 'Resume which frozen sandbox?', none: 'No frozen sandbox to resume.' },
  'coi.snapshot.create': { appliesTo: () => true, placeholder: 'Snapshot which sandbox?', none: 'No sandbox to snapshot.' },
};

export const SNAPSHOT_COMMANDS: Record<SnapshotCommand, { placeholder: string }> = {
  'coi.snapshot.restore': { placeholder: 'Restore which snapshot?' },
  'coi.snapshot.delete': { placeholder: 'Delete which snapshot?' },
  'coi.snapshot.branch': { placeholder: 'Start a new sandbox from which snapshot?' },
};

/**
 * The target of a command run from the tree (its node), from another command
 * (a node-like object or a sandbox name), or from the Palette (nothing).
 */
export function targetOf(arg: unknown): Target | undefined {
  if (typeof arg === 'string' && arg) return { kind: 'sandbox', name: arg };
  if (!arg || typeof arg !== 'object') return undefined;
  const t = (arg as { target?: unknown }).target;
  if (!t || typeof t !== 'object') return undefined;
  const kind = (t as { kind?: unknown }).kind;
  return kind === 'workspace' || kind === 'sandbox' || kind === 'snapshot' ? (t as Target) : undefined;
}

/** The sandbox name a sandbox command acts on, if the argument names one. */
export function sandboxNameOf(arg: unknown): string | undefined {
  const t = targetOf(arg);
  return t?.kind === 'sandbox' ? t.name : undefined;
}

/** The snapshot a snapshot command acts on, if the argument is a snapshot node. */
export function snapshotOf(arg: unknown): { sandbox: string; snapshot: string } | undefined {
  const t = targetOf(arg);
  return t?.kind === 'snapshot' ? { sandbox: t.sandbox, snapshot: t.snapshot } : undefined;
}

/** The workspace folder a workspace command acts on: the node's, else the only open one. */
export function workspaceOf(arg: unknown, folders: Folder[]): { folder?: Folder; mustPick: boolean } {
  const t = targetOf(arg);
  if (t?.kind === 'workspace') return { folder: folders.find((f) => f.path === t.path) ?? { name: t.name, path: t.path }, mustPick: false };
  if (folders.length === 1) return { folder: folders[0]!, mustPick: false };
  return { mustPick: folders.length > 1 };
}

// ── requests ────────────────────────────────────────────────────────────────

export interface Call<P = unknown, R = unknown> {
  def: RequestDef<P, R>;
  params: P;
}

/** The request a sandbox command sends, except attach (a terminal) and snapshot.create (see snapshotCreateCall). */
export function sandboxCall(command: Exclude<SandboxCommand, 'coi.attach' | 'coi.snapshot.create'>, name: string): Call {
  switch (command) {
    case 'coi.shutdown':
      return { def: SandboxShutdown, params: { name } } as Call;
    case 'coi.kill':
      return { def: SandboxKill, params: { name } } as Call;
    case 'coi.persist':
      return { def: SandboxPersist, params: { name } } as Call;
    case 'coi.resume':
      return { def: SandboxResume, params: { name } } as Call;
  }
}

/** snapshot/create: an empty name lets the helper choose one. */
export function snapshotCreateCall(name: string, snapshotName: string | undefined): Call {
  const snap = snapshotName?.trim();
  return { def: SnapshotCreate, params: { name, ...(snap ? { snapshot: snap } : {}) } } as Call;
}

export function snapshotCall(command: SnapshotCommand, target: { sandbox: string; snapshot: string }): Call {
  const params = { name: target.sandbox, snapshot: target.snapshot };
  switch (command) {
    case 'coi.snapshot.restore':
      return { def: SnapshotRestore, params } as Call;
    case 'coi.snapshot.delete':
      return { def: SnapshotDelete, params } as Call;
    case 'coi.snapshot.branch':
      return { def: SnapshotBranch, params } as Call;
  }
}

/** Undefined when the name is acceptable (empty: the helper picks one), else why not. */
export function validateSnapshotName(name: string): string | undefined {
  const n = name.trim();
  if (n === '') return undefined;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(n)) return 'Letters, digits, ".", "_" and "-", starting with a letter or digit; at most 63.';
  return undefined;
}

/** Questions asked before a destructive command; undefined: no question. */
export function confirmation(command: SandboxCommand | SnapshotCommand, sb: { name: string; slot?: number; persistent?: boolean }, snapshot?: string): { message: string; detail: string; button: string } | undefined {
  const which = sb.slot !== undefined ? `slot ${sb.slot} (${sb.name})` : sb.name;
  switch (command) {
    case 'coi.kill':
      return { message: `Kill ${which}?`, detail: 'The container is deleted at once, with the agent and everything outside /workspace. Workspace files stay.', button: 'Kill' };
    case 'coi.snapshot.restore':
      return { message: `Restore ${which} to snapshot ${snapshot}?`, detail: 'Everything in the container since the snapshot is lost; the agent restarts.', button: 'Restore' };
    case 'coi.snapshot.delete':
      return { message: `Delete snapshot ${snapshot} of ${which}?`, detail: 'It cannot be restored afterwards.', button: 'Delete' };
    default:
      return undefined;
  }
}

// ── quick picks ─────────────────────────────────────────────────────────────

export interface PickItem<V> {
  label: string;
  description?: string;
  detail?: string;
  value: V;
}

/** Items plus which one is active (highlighted, so Enter takes it). */
export interface PickList<V> {
  items: PickItem<V>[];
  active: number;
}

/**
 * The slots a command can act on: this window's workspaces first, then by
 * workspace and slot.
 */
export function sandboxPickItems(sandboxes: Sandbox[], command: SandboxCommand, folders: Folder[]): PickItem<string>[] {
  const open = new Map(folders.map((f) => [realOf(f), f.name]));
  return sandboxes
    .filter((sb) => SANDBOX_COMMANDS[command].appliesTo(sb))
    .sort((a, b) => Number(open.has(b.workspace)) - Number(open.has(a.workspace)) || a.workspace.localeCompare(b.workspace) || a.slot - b.slot)
    .map((sb) => ({
      label: `${open.get(sb.workspace) ?? baseName(sb.workspace)} · slot ${sb.slot}`,
      description: `${sb.state} · ${sb.tool} · ${sb.persistent ? 'persistent' : 'ephemeral'}`,
      detail: sb.name,
      value: sb.name,
    }));
}

export function snapshotPickItems(snapshots: Snapshot[]): PickItem<string>[] {
  return [...snapshots]
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .map((s) => ({ label: s.name, description: `${s.createdAt}${s.stateful ? ' · stateful' : ''}`, value: s.name }));
}

/** What "Open Workspace in COI Sandbox" was told; undefined fields: as configured (or auto). */
export interface OpenChoices {
  tool?: string;
  slot?: number;
  profile?: string;
  persistent?: boolean;
}

/** The workspaceState key of a workspace's remembered choices. */
export const choicesKey = (workspace: string) => `coi.openChoices:${workspace}`;

/** Remembered choices, validated: whatever else was stored is dropped. */
export function readChoices(raw: unknown): OpenChoices {
  if (!raw || typeof raw !== 'object') return {};
  const r = raw as Record<string, unknown>;
  const out: OpenChoices = {};
  if (typeof r.tool === 'string' && r.tool) out.tool = r.tool;
  if (typeof r.slot === 'number' && Number.isInteger(r.slot) && r.slot >= 1 && r.slot <= 10) out.slot = r.slot;
  if (typeof r.profile === 'string' && r.profile) out.profile = r.profile;
  if (typeof r.persistent === 'boolean') out.persistent = r.persistent;
  return out;
}

/** sandbox/open's params from the choices. */
export function openParams(workspace: string, c: OpenChoices): { workspace: string; slot?: number; tool?: string; persistent?: boolean; profile?: string } {
  const p: { workspace: string; slot?: number; tool?: string; persistent?: boolean; profile?: string } = { workspace };
  if (c.slot !== undefined) p.slot = c.slot;
  if (c.tool !== undefined) p.tool = c.tool;
  if (c.persistent !== undefined) p.persistent = c.persistent;
  if (c.profile !== undefined) p.profile = c.profile;
  return p;
}

function activeOf<V>(items: PickItem<V>[], want: V | undefined, fallback = 0): number {
  const i = items.findIndex((x) => x.value === want);
  return i >= 0 ? i : fallback;
}

/**
 * Step 1, the tool. `configured` is what the workspace's configuration picks;
 * `preferred` the coi.defaultTool setting ('' = none). The remembered choice
 * wins, then the setting, then "as configured".
 */
export function toolPick(options: SandboxOptionsResult, remembered: OpenChoices, preferred: string): PickList<string | undefined> {
  const items: PickItem<string | undefined>[] = [
    { label: `As configured: ${options.defaults.tool}`, description: '.coi/config.toml', value: undefined },
    ...options.tools.map((t) => ({ label: t.name, description: t.description, value: t.name as string | undefined })),
  ];
  const want = remembered.tool ?? (preferred || undefined);
  return { items, active: activeOf(items, want) };
}

/** Step 2, the slot: auto or 1..10, each saying what is there now. */
export function slotPick(existing: Sandbox[], remembered: OpenChoices): PickList<number | undefined> {
  const bySlot = new Map(existing.map((sb) => [sb.slot, sb]));
  const items: PickItem<number | undefined>[] = [{ label: 'Auto', description: 'the first free slot (or a stopped persistent one)', value: undefined }];
  for (let n = 1; n <= 10; n++) {
    const sb = bySlot.get(n);
    const description = !sb
      ? 'free'
      : sb.state === 'stopped' && sb.persistent
        ? 'stopped, persistent: restarted'
        : `${sb.state}: taken, the next free slot is used`;
    items.push({ label: `Slot ${n}`, description, value: n });
  }
  return { items, active: activeOf(items, remembered.slot) };
}

/** Step 3, the profile (optional). */
export function profilePick(options: SandboxOptionsResult, remembered: OpenChoices): PickList<string | undefined> {
  const items: PickItem<string | undefined>[] = [
    { label: `As configured${options.defaults.profile ? `: ${options.defaults.profile}` : ''}`, description: 'no --profile', value: undefined },
    ...options.profiles.map((p) => ({ label: p.name, description: p.scope === 'builtin' ? 'built-in' : p.scope, ...(p.description ? { detail: p.description } : {}), value: p.name as string | undefined })),
  ];
  return { items, active: activeOf(items, remembered.profile) };
}

/** Step 4, persistence. */
export function persistentPick(options: SandboxOptionsResult, remembered: OpenChoices): PickList<boolean | undefined> {
  const items: PickItem<boolean | undefined>[] = [
    { label: `As configured: ${options.defaults.persistent ? 'persistent' : 'ephemeral'}`, description: '.coi/config.toml', value: undefined },
    { label: 'Ephemeral', description: 'deleted when it stops', value: false },
    { label: 'Persistent', description: 'kept when it stops, restarted next time', value: true },
  ];
  return { items, active: activeOf(items, remembered.persistent) };
}

/** A one-line summary for the progress notification: "shell, slot auto, ephemeral". */
export function describeChoices(c: OpenChoices): string {
  return [c.tool ?? 'configured tool', `slot ${c.slot ?? 'auto'}`, ...(c.profile ? [`profile ${c.profile}`] : []), c.persistent === undefined ? 'configured persistence' : c.persistent ? 'persistent' : 'ephemeral'].join(', ');
}

// ── terminals ───────────────────────────────────────────────────────────────

export interface HelperBinary {
  /** The Node that runs the extension (desktop: Electron, with ELECTRON_RUN_AS_NODE=1). */
  execPath: string;
  /** <extension>/dist/helper.js */
  helperJs: string;
}

/** The name of a slot's agent terminal: "<workspace folder> · slot N". */
export function terminalName(sb: Pick<Sandbox, 'workspace' | 'slot'>, folders: Folder[]): string {
  const folder = folders.find((f) => realOf(f) === sb.workspace);
  return `${folder?.name ?? baseName(sb.workspace)} · slot ${sb.slot}`;
}

/** The agent terminal: the bundled helper's `attach NAME` run by the editor's Node, no shell in between. */
export function attachTerminalSpec(bin: HelperBinary, sb: Pick<Sandbox, 'name' | 'workspace' | 'slot'>, folders: Folder[]): { name: string; shellPath: string; shellArgs: string[]; env: Record<string, string> } {
  return { name: terminalName(sb, folders), shellPath: bin.execPath, shellArgs: [bin.helperJs, 'attach', sb.name], env: { ELECTRON_RUN_AS_NODE: '1' } };
}

/**
 * The sandbox an agent terminal is attached to, read from how it was created
 * (our attach spec, or the terminal profile's); undefined for other terminals.
 */
export function attachedSandbox(bin: HelperBinary, creation: { shellPath?: string; shellArgs?: string[] | string }): string | undefined {
  const args = creation.shellArgs;
  if (creation.shellPath !== bin.execPath || !Array.isArray(args) || args.length !== 3) return undefined;
  return args[0] === bin.helperJs && args[1] === 'attach' ? args[2] : undefined;
}

/**
 * After a window reload: the running shell slots of this window's workspaces
 * that have no agent terminal attached (`attached`: sandbox names).
 */
export function terminalsToRestore(sandboxes: Sandbox[], folders: Folder[], attached: string[]): Sandbox[] {
  const open = new Set(folders.map(realOf));
  const has = new Set(attached);
  return sandboxes
    .filter((sb) => open.has(sb.workspace) && sb.state === 'running' && sb.kind === 'shell' && sb.phase === 'ready')
    .filter((sb) => !has.has(sb.name))
    .sort((a, b) => a.slot - b.slot);
}

/** The slot the "COI Sandbox" terminal profile attaches to: the lowest running shell slot of the first folder. */
export function profileTarget(sandboxes: Sandbox[], folders: Folder[]): Sandbox | undefined {
  const first = folders[0];
  if (!first) return undefined;
  return sandboxes.filter((sb) => sb.workspace === realOf(first) && sb.state === 'running' && sb.kind === 'shell').sort((a, b) => a.slot - b.slot)[0];
}

/** A shell command line running the bundled helper, for terminals that keep their output on screen. */
export function helperCommandLine(bin: HelperBinary, args: string[]): string {
  return ['env', 'ELECTRON_RUN_AS_NODE=1', bin.execPath, bin.helperJs, ...args].map(shellQuote).join(' ');
}

/**
 * "Run Command in a Fresh Sandbox": `coi run` in a new sandbox of the workspace.
 * `sh -c --` so that a command starting with "-" is the command, not an option.
 */
export function runCommandLine(bin: HelperBinary, workspace: string, command: string): string {
  return helperCommandLine(bin, ['run', '--workspace', workspace, '--', 'sh', '-c', '--', command]);
}

export { sandboxContext };
