/**
 * Versions and reachability of the three parts: helper, Incus, guard. One
 * function each, shared by `coi version`, `helper/info` and `guard/info`.
 */
import { toCoiError } from '../errors';
import { IncusClient } from '../incus/client';
import { GuardClient } from '../guard/client';
import type { GuardStatus, HelperInfoResult, IncusStatus } from '../protocol/methods';
import { COI_VERSION } from '../version';

export async function incusStatusOf(incus: IncusClient): Promise<IncusStatus> {
  try {
    const info = await incus.server({ timeoutMs: 5_000 });
    return {
      reachable: true,
      serverVersion: info.environment?.server_version ?? 'unknown',
      apiVersion: info.api_version,
      endpoint: incus.endpoint,
    };
  } catch (e) {
    const err = toCoiError(e);
    const status: IncusStatus = { reachable: false, endpoint: incus.endpoint, error: err.message };
    if (err.remedy?.shell) status.remedy = err.remedy.shell;
    return status;
  }
}

export async function guardStatusOf(socketPath: string): Promise<GuardStatus> {
  const client = new GuardClient({ socketPath });
  try {
    await client.connect({ timeoutMs: 2_000 });
    const info = await client.info();
    return { reachable: true, version: info.guard.version, pid: info.guard.pid, socket: socketPath };
  } catch (e) {
    return { reachable: false, socket: socketPath, error: toCoiError(e).message };
  } finally {
    client.close();
  }
}

export async function helperInfo(incus: IncusClient, guardSocket: string): Promise<HelperInfoResult> {
  const [incusStatus, guard] = await Promise.all([incusStatusOf(incus), guardStatusOf(guardSocket)]);
  return { helper: { version: COI_VERSION, pid: process.pid, node: process.version }, incus: incusStatus, guard };
}
