/**
 * Shared by the integration tests: the real Incus, the real `coi` bundle, and
 * clean-up by label so a failed run leaves nothing behind for the next one.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { IncusClient } from '../../helper/incus/client';
import { UnixSocketTransport } from '../../helper/incus/transport';
import { SETUP_NAMES } from '../../helper/setup/names';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const HELPER = path.join(REPO, 'dist', 'helper.js');
export const TEST_LABEL = 'user.coi.test';

export function incus(): IncusClient {
  return new IncusClient(new UnixSocketTransport());
}

/** Fails loudly when Incus or the base image is missing: a missing component is a failure, not a skip. */
export async function requireIncus(): Promise<IncusClient> {
  const c = incus();
  try {
    await c.server({ timeoutMs: 5_000 });
  } catch (e) {
    throw new Error(`integration tests need a running Incus (run "sudo npm run setup" first): ${(e as Error).message}`);
  }
  if (!(await c.imageAlias(SETUP_NAMES.baseImage))) {
    throw new Error(`integration tests need the image ${SETUP_NAMES.baseImage} (run "sudo npm run setup" first)`);
  }
  return c;
}

export function uniqueName(prefix = 'coi-it'): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Deletes every instance this test run labelled. */
export async function cleanupLabelled(c: IncusClient, runId: string): Promise<void> {
  const all = await c.listInstances().catch(() => []);
  for (const i of all.filter((x) => x.config?.[TEST_LABEL] === runId)) {
    await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  }
}

export interface CoiResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `coi` bundle, in `cwd` when given (commands that act on "this workspace"); stdin closed unless `input` is given. */
export function coi(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000, cwd?: string, input?: string): Promise<CoiResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HELPER, ...args], { env: { ...process.env, ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (input !== undefined) child.stdin!.end(input);
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coi ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Deletes every instance whose name starts with a test's prefix. */
export async function deleteByPrefix(c: IncusClient, prefix: string): Promise<void> {
  for (const i of await c.listInstances().catch(() => [])) {
    if (i.name.startsWith(prefix)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
