import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { IncusClient } from '../../helper/incus/client';
import { parseNetworkLabel } from '../../helper/sandbox/network-label';
import { coi, CoiResult, deleteByPrefix, requireIncus } from './support';

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
  await deleteByPrefix(c, PREFIX);
  rmSync(root, { recursive: true, force: true });
});

function coiIn(args: string[]): Promise<CoiResult> {
  return coi(args, { HOME: home, COI_CONTAINER_PREFIX: PREFIX, COI_TRUST_ALL: '' }, 300_000, ws);
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
