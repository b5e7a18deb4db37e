import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '../../../helper/config';
import { requestFromConfig } from '../../../helper/images/request';

const root = mkdtempSync(path.join(os.tmpdir(), 'coi-breq-'));
const home = path.join(root, 'home');
const ws = path.join(root, 'ws');
mkdirSync(ws, { recursive: true });
after(() => rmSync(root, { recursive: true, force: true }));

function profile(name: string, toml: string, files: Record<string, string> = {}): void {
  const dir = path.join(home, '.coi', 'profiles', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.toml'), toml);
  for (const [f, t] of Object.entries(files)) writeFileSync(path.join(dir, f), t);
}

test('without a build script, coi build builds the default image from [container.build]', async () => {
  const r = await requestFromConfig(await loadConfig({ home, workspace: ws, env: {} }), { force: true });
  assert.equal(r.kind, 'default');
  assert.equal(r.name, 'coi');
  assert.equal(r.force, true);
  assert.equal(r.compression, 'none');
  assert.equal(r.keep, 3);
  assert.deepEqual(r.kind === 'default' && r.agents, ['claude', 'opencode']);
});

test("a profile's [container.build] script makes a custom image named by its [container] image, from coi, the script beside the profile", async () => {
  profile('rust', '[container]\nimage = "coi-rust"\n[container.build]\nscript = "build.sh"\ncommands = ["echo done"]\ncompression = "gzip"\n', { 'build.sh': '#!/bin/sh\necho rust\n' });
  const r = await requestFromConfig(await loadConfig({ home, workspace: ws, env: {}, profile: 'rust' }), {});
  assert.equal(r.kind, 'custom');
  assert.equal(r.name, 'coi-rust');
  assert.equal(r.base, 'coi', 'the default image unless the profile names a base');
  assert.equal(r.compression, 'gzip');
  assert.ok(r.kind === 'custom' && r.script);
  if (r.kind === 'custom') {
    assert.equal(r.script!.file, path.join(home, '.coi', 'profiles', 'rust', 'build.sh'));
    assert.equal(r.script!.text, '#!/bin/sh\necho rust\n');
    assert.deepEqual(r.commands, ['echo done']);
  }
});

test('a profile may name its base; a custom image may not be called coi', async () => {
  profile('py', '[container]\nimage = "coi-py"\n[container.build]\nbase = "coi-base"\ncommands = ["true"]\n');
  const r = await requestFromConfig(await loadConfig({ home, workspace: ws, env: {}, profile: 'py' }), {});
  assert.equal(r.base, 'coi-base');
  profile('bad', '[container.build]\ncommands = ["true"]\n');
  await assert.rejects(requestFromConfig(await loadConfig({ home, workspace: ws, env: {}, profile: 'bad' }), {}), /\[container\] image is "coi"/);
});
