/**
 * `[limits]` → Incus keys (reference §7). Instance keys for CPU, memory,
 * processes and disk priority; the disk I/O limits and size belong on the
 * root disk device (the Go tool set them as instance keys before 0.9, which
 * Incus ignores). Unset values produce no key, leaving Incus's default.
 */
import { parseDuration, type Limits } from './schema';

export interface IncusLimits {
  /** Instance config keys. */
  config: Record<string, string>;
  /** Keys for the root disk device override. */
  rootDevice: Record<string, string>;
}

export function limitsToIncus(limits: Limits): IncusLimits {
  const config: Record<string, string> = {};
  const rootDevice: Record<string, string> = {};
  const { cpu, memory, disk, runtime } = limits;

  if (cpu.count !== '') config['limits.cpu'] = cpu.count;
  if (cpu.allowance !== '') config['limits.cpu.allowance'] = cpu.allowance;
  if (cpu.priority !== undefined) config['limits.cpu.priority'] = String(cpu.priority);

  const swap = String(memory.swap);
  if (memory.limit !== '') {
    config['limits.memory'] = memory.limit;
    config['limits.memory.enforce'] = memory.enforce;
    config['limits.memory.swap'] = swap;
  } else if (swap === 'false') {
    config['limits.memory.swap'] = 'false';
  }

  if (runtime.max_processes > 0) config['limits.processes'] = String(runtime.max_processes);
  if (disk.priority !== undefined) config['limits.disk.priority'] = String(disk.priority);

  if (disk.read !== '') rootDevice['limits.read'] = disk.read;
  if (disk.write !== '') rootDevice['limits.write'] = disk.write;
  if (disk.max !== '') rootDevice['limits.max'] = disk.max;
  if (disk.size !== '') rootDevice['size'] = disk.size;

  return { config, rootDevice };
}

export interface RuntimeLimits {
  /** Undefined: no time limit. */
  maxDurationMs?: number;
  /** false: only warn when the time is up. */
  autoStop: boolean;
  /** Graceful stop, a grace period, then force; false: force at once. */
  stopGraceful: boolean;
  /** Size for the /tmp tmpfs, when set. */
  tmpfsSize?: string;
}

/** What the guard's timer and the session set-up need from `[limits]` beyond Incus keys. */
export function runtimeLimits(limits: Limits): RuntimeLimits {
  const out: RuntimeLimits = { autoStop: limits.runtime.auto_stop, stopGraceful: limits.runtime.stop_graceful };
  const ms = limits.runtime.max_duration === '' ? undefined : parseDuration(limits.runtime.max_duration);
  if (ms !== undefined && ms > 0) out.maxDurationMs = ms;
  if (limits.disk.tmpfs_size !== '') out.tmpfsSize = limits.disk.tmpfs_size;
  return out;
}
