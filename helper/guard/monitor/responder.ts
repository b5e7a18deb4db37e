/**
 * The Incus half of a response. The monitor loop has already frozen the
 * container's cgroup (containment); these calls bring Incus's state in line
 * and, for CRITICAL, end the container:
 *
 * - pause: Incus freeze (accepted on an already frozen cgroup), so `coi list`
 *   says frozen and `coi resume` thaws it;
 * - kill: force stop (works on a frozen container: init gets SIGKILL before
 *   the thaw, so nothing runs again), then, when `forensics_on_kill`, a copy
 *   `<name>-forensics-<UTC time>` of the stopped container (unmanaged, no
 *   network device; the 3 newest per sandbox are kept), then delete.
 *
 * The Reaper would delete a stopped ephemeral sandbox on its own; the
 * supervisor holds it off while a kill is in progress (forensics first).
 */
import { CoiError, ErrorCodes, toCoiError } from '../../errors';
import type { IncusClient } from '../../incus/client';
import type { Log } from '../../log';
import { LABELS } from '../../sandbox/labels';

export const FORENSICS_LABEL = 'user.coi.forensics-of';
export const FORENSICS_AT_LABEL = 'user.coi.forensics-at';
export const FORENSICS_KEEP = 3;

export interface KillOutcome {
  stoppedMs: number;
  forensics?: string;
  forensicsError?: string;
  deleted: boolean;
}

function isNotFound(e: unknown): boolean {
  return e instanceof CoiError && e.code === ErrorCodes.NOT_FOUND;
}

export async function incusFreeze(incus: IncusClient, name: string): Promise<void> {
  try {
    await incus.setState(name, 'freeze', { timeoutMs: 30_000 });
  } catch (e) {
    // Already frozen (by a person, or a second event) is the state we want; Incus may say so before its
    // state reads Frozen.
    if (/already frozen/i.test(toCoiError(e).message)) return;
    const st = await incus.getState(name).catch(() => undefined);
    if (st?.status === 'Frozen') return;
    throw e;
  }
}

/** Whether a stop or a delete of the container is running in Incus now. */
export async function incusStopping(incus: IncusClient, name: string): Promise<boolean> {
  const ops = await incus.get<{ running?: { description?: string; resources?: { instances?: string[] } }[] }>('/1.0/operations?recursion=1');
  return isStopping(ops.running ?? [], name);
}

/** Pure half of incusStopping: running operations in, whether one ends this container. */
export function isStopping(running: readonly { description?: string; resources?: { instances?: string[] } }[], name: string): boolean {
  const path = `/1.0/instances/${encodeURIComponent(name)}`;
  return running.some((o) => /^(stopping|deleting) instance/i.test(o.description ?? '') && (o.resources?.instances ?? []).some((r) => r === path || r.startsWith(`${path}?`)));
}

/** `<name>-forensics-20261127-053012`, cut to Incus's 63 characters. */
export function forensicsName(name: string, at: Date): string {
  const ts = at.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const suffix = `-forensics-${ts}`;
  return `${name.slice(0, 63 - suffix.length).replace(/-+$/, '')}${suffix}`;
}

export async function killSandbox(incus: IncusClient, name: string, opts: { forensics: boolean; log: Log; now?: () => Date }): Promise<KillOutcome> {
  const t0 = Date.now();
  try {
    await incus.setState(name, 'stop', { force: true, timeoutMs: 60_000 });
  } catch (e) {
    if (isNotFound(e)) return { stoppedMs: Date.now() - t0, deleted: true };
    const st = await incus.getState(name).catch((err: unknown) => (isNotFound(err) ? ({ status: 'Gone' } as const) : undefined));
    if (st?.status === 'Gone') return { stoppedMs: Date.now() - t0, deleted: true };
    if (st?.status !== 'Stopped') throw e;
  }
  const out: KillOutcome = { stoppedMs: Date.now() - t0, deleted: false };
  if (opts.forensics) {
    try {
      out.forensics = await forensicCopy(incus, name, (opts.now ?? (() => new Date()))());
      await pruneForensics(incus, name, opts.log);
    } catch (e) {
      out.forensicsError = toCoiError(e).message;
      opts.log.warn(`forensic copy of ${name} failed: ${out.forensicsError}`);
    }
  }
  try {
    await incus.deleteInstance(name, { force: true, timeoutMs: 120_000 });
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  out.deleted = true;
  return out;
}

async function forensicCopy(incus: IncusClient, name: string, at: Date): Promise<string> {
  const copy = forensicsName(name, at);
  await incus.run(
    'POST',
    incus.url('/1.0/instances'),
    {
      name: copy,
      type: 'container',
      source: { type: 'copy', source: name, instance_only: true },
      // Not a sandbox any more: nothing lists, monitors or reaps it; no network if someone starts it.
      config: {
        [LABELS.managed]: 'false',
        [LABELS.monitor]: '',
        'boot.autostart': 'false',
        [FORENSICS_LABEL]: name,
        [FORENSICS_AT_LABEL]: at.toISOString(),
      },
      devices: { eth0: { type: 'none' } },
      description: `COI forensic copy of ${name}, killed by the guard at ${at.toISOString()}`,
    },
    { timeoutMs: 300_000 },
  );
  return copy;
}

async function pruneForensics(incus: IncusClient, name: string, log: Log): Promise<void> {
  const copies = (await incus.listInstances())
    .filter((i) => i.config?.[FORENSICS_LABEL] === name)
    .sort((a, b) => (b.config[FORENSICS_AT_LABEL] ?? '').localeCompare(a.config[FORENSICS_AT_LABEL] ?? ''));
  for (const old of copies.slice(FORENSICS_KEEP)) {
    await incus.deleteInstance(old.name, { force: true }).catch((e: unknown) => log.warn(`could not delete the old forensic copy ${old.name}: ${toCoiError(e).message}`));
  }
}
