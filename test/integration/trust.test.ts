import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { parseNetworkLabel } from '../../helper/sandbox/network-label';
import { CoiResult, HELPER, requireIncus } from './support';

const PREFIX = `coi-tr${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-trust-');
const home = path.join(root, 'home');
const ws = path.join(root, 'cloned-repo');
let c: IncusClient;

before(async () => {
  c = await requireIncus();
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(path.join(ws, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n');
});
after(async () => {
  for (const i of await c.listInstances().catch(() => [])) if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

function coiIn(args: string[]): Promise<CoiResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [HELPER, ...args], { cwd: ws, env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX, COI_TRUST_ALL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Launches a sandbox, returns the network mode the guard was told to enforce and what coi printed; kills it. */
async function launchMode(): Promise<{ mode: string; stderr: string }> {
  const r = await coiIn(['shell', '--background']);
  assert.equal(r.code, 0, r.stderr);
  const name = r.stdout.trim();
  const parsed = parseNetworkLabel((await c.getInstance(name)).config['user.coi.network']);
  assert.ok(parsed.ok, 'the network label is readable');
  await coiIn(['kill', name]);
  return { mode: parsed.ok ? parsed.label.mode : '?', stderr: r.stderr };
}

test('a cloned repository asking for an open network gets restricted and a warning, until coi trust; a change asks again', async () => {
  writeFileSync(path.join(ws, '.coi', 'config.toml'), '[network]\nmode = "open"\n');
  const untrusted = await launchMode();
  assert.equal(untrusted.mode, 'restricted', 'the project may not open the network by itself');
  assert.match(untrusted.stderr, /warning: .*network\.mode/);
  assert.match(untrusted.stderr, /coi trust/);

  const trust = await coiIn(['trust']);
  assert.equal(trust.code, 0, trust.stderr);
  const trusted = await launchMode();
  assert.equal(trusted.mode, 'open', 'after coi trust the setting applies');
  assert.doesNotMatch(trusted.stderr, /warning: .*network\.mode/);

  writeFileSync(path.join(ws, '.coi', 'config.toml'), '[network]\nmode = "open"\nallow_local_network_access = true\n');
  const changed = await launchMode();
  assert.equal(changed.mode, 'restricted', 'a changed set of privileged settings is untrusted again');
  assert.match(changed.stderr, /coi trust/);
});
