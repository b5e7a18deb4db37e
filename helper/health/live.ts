/**
 * The live check: a temporary sandbox, launched the normal way with the
 * user's configuration (pool, image, limits, id mapping) on an empty scratch
 * workspace, then probed from inside — is it confined by seccomp, unprivileged,
 * and does restricted mode keep it off a private address? It is deleted
 * afterwards whatever happens; if coi itself dies, it is a `run` sandbox
 * whose launcher is gone, which the guard reaps.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LoadedConfig } from '../config';
import { toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import type { Log } from '../log';
import { managerWith } from '../sandbox/factory';
import { settingsFromConfig } from '../sandbox/from-config';
import type { LiveFacts } from './facts';
import { PROBE_SCRIPT, parseProbeOutput, ProbeTarget } from './target';

export interface LiveOptions {
  env: NodeJS.ProcessEnv;
  incus: IncusClient;
  log: Log;
  loaded: LoadedConfig;
  target: ProbeTarget;
  progress?: (m: string) => void;
}

export async function runLiveCheck(o: LiveOptions): Promise<LiveFacts> {
  const settings = {
    ...settingsFromConfig(o.loaded, o.env),
    // A scratch workspace: the project's extra mounts and protected paths mean nothing here.
    protectedPaths: [],
    mounts: [],
    sshForwardAgent: false,
    forwardEnv: [],
    snapshots: { auto: false, keep: 1 },
  };
  const mgr = managerWith({ env: o.env, incus: o.incus, log: o.log, warn: () => undefined }, settings);
  const ws = mkdtempSync(path.join(os.tmpdir(), 'coi-health-'));
  chmodSync(ws, 0o755);
  const t0 = Date.now();
  let name: string | undefined;
  o.progress?.(`starting a temporary sandbox from ${settings.image} on pool ${settings.pool}`);
  try {
    const sb = await mgr.open({ workspace: ws, kind: 'run', startTool: false });
    name = sb.name;
    const seconds = (Date.now() - t0) / 1000;
    o.log.debug(`health: ${name} up in ${seconds.toFixed(1)} s`);
    o.progress?.(`probing ${o.target.address} from inside ${name}`);
    const r = await o.incus.exec(name, ['sh', '-c', PROBE_SCRIPT, 'probe', o.target.address, String(o.target.port)], { timeoutMs: 30_000 });
    const p = parseProbeOutput(r.stdout);
    return {
      ran: true,
      started: true,
      name,
      seconds,
      ...(p.seccomp ? { seccomp: p.seccomp } : {}),
      ...(p.uidMap ? { uidMap: p.uidMap } : {}),
      probe: { target: o.target.address, port: o.target.port, icmp: p.icmp, tcp: p.tcp, ...(p.address ? { address: p.address } : {}), ...(p.route ? { route: p.route } : {}), raw: (r.stdout + r.stderr).trim() },
    };
  } catch (e) {
    const err = toCoiError(e);
    if (name) return { ran: true, started: true, name, seconds: (Date.now() - t0) / 1000, error: `the probe inside ${name} failed: ${err.message}` };
    return { ran: true, started: false, seconds: (Date.now() - t0) / 1000, error: err.message, ...(err.remedy ? { remedy: { title: err.remedy.title, ...(err.remedy.shell ? { shell: err.remedy.shell } : {}) } } : {}), ...(name ? { name } : {}) };
  } finally {
    if (name) await o.incus.deleteInstance(name, { force: true }).catch((e: unknown) => o.log.warn(`could not delete the health check's ${name}: ${toCoiError(e).message}`));
    rmSync(ws, { recursive: true, force: true });
  }
}
