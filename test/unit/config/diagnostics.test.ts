import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { editDistance, suggest } from '../../../helper/config/diagnostics';
import { isCoiError, type CoiError } from '../../../helper/errors';
import { withWorld } from './world';

async function loadError(fn: () => Promise<unknown>): Promise<CoiError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(isCoiError(e), `expected a CoiError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the load to fail');
}

test('edit distance counts a transposition as one edit', () => {
  assert.equal(editDistance('netwrok', 'network'), 1);
  assert.equal(editDistance('mode', 'mode'), 0);
  assert.equal(editDistance('allowed_domain', 'allowed_domains'), 1);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(suggest('persistant', ['persistent', 'image']), 'persistent');
  assert.equal(suggest('zzz', ['ssh', 'git']), undefined);
  assert.equal(suggest('Mode', ['mode']), 'mode');
});

test('a misspelled key names file:line:column, the key and the right key', () =>
  withWorld(async (w) => {
    const file = w.write('home/.coi/config.toml', '# mine\n[network]\nmode = "allowlist"\n  allowed_domain = ["example.com"]\n');
    const e = await loadError(() => w.load());
    assert.equal(e.message, `${file}:4:3: unknown key "allowed_domain" in [network]; did you mean "network.allowed_domains"?`);
    assert.equal(e.code, 'INVALID_INPUT');
    const problems = (e.details as { problems: Array<{ file: string; line: number; column: number; key: string; suggestion: string }> }).problems;
    assert.deepEqual(
      problems.map((p) => [p.file, p.line, p.column, p.key, p.suggestion]),
      [[file, 4, 3, 'network.allowed_domain', 'network.allowed_domains']],
    );
  }));

test('a misspelled table and a key in the wrong table get their hints', () =>
  withWorld(async (w) => {
    const file = w.write('ws/.coi/config.toml', '[netwrok]\nmode = "open"\n\n[network]\nimage = "x"\n');
    const e = await loadError(() => w.load());
    assert.match(e.message, /^2 problems in /);
    assert.ok(e.message.includes(`${file}:1:1: unknown key "netwrok" at the top level; did you mean "network"?`), e.message);
    assert.ok(e.message.includes(`${file}:5:1: unknown key "image" in [network]; did you mean "container.image"?`), e.message);
  }));

test('a bad value says what was expected and what was found, with a suggestion for a near enum value', () =>
  withWorld(async (w) => {
    const file = w.write('home/.coi/config.toml', '[network]\nmode = "restrcted"\n[limits.memory]\nlimit = "2G"\n[container]\npersistent = "yes"\n[[mounts]]\nhost = "/data"\ncontainer = "data"\n');
    const e = await loadError(() => w.load());
    assert.ok(e.message.includes(`${file}:2:1: network.mode: expected one of "restricted", "allowlist", "open", got "restrcted"; did you mean "restricted"?`), e.message);
    assert.ok(e.message.includes(`${file}:4:1: limits.memory.limit: expected a memory size such as "2GiB", "512MiB" or "50%", or "" for no limit, got "2G"`), e.message);
    assert.ok(e.message.includes(`${file}:6:1: container.persistent: expected true or false, got "yes"`), e.message);
    assert.ok(e.message.includes(`${file}:9:1: mounts[0].container: expected an absolute path inside the container, such as "/data", got "data"`), e.message);
  }));

test('numbers out of range say the bound', () =>
  withWorld(async (w) => {
    const file = w.write('home/.coi/config.toml', '[limits.cpu]\npriority = 11\n');
    const e = await loadError(() => w.load());
    assert.equal(e.message, `${file}:2:1: limits.cpu.priority: expected a number ≤ 10, got 11`);
  }));

test('a bad environment variable value names the variable', () =>
  withWorld(async (w) => {
    let e = await loadError(() => w.load({ env: { COI_NETWORK_MODE: 'opne' } }));
    assert.equal(e.message, 'environment variable COI_NETWORK_MODE: network.mode: expected one of "restricted", "allowlist", "open", got "opne"; did you mean "open"?');
    e = await loadError(() => w.load({ env: { COI_PERSISTENT: 'maybe' } }));
    assert.match(e.message, /^environment variable COI_PERSISTENT: expected 1 or 0/);
  }));

test('a cross-key problem points at the file that set the key', () =>
  withWorld(async (w) => {
    w.write('home/.coi/config.toml', '[timezone]\nmode = "fixed"\n');
    const p = w.write('ws/.coi/config.toml', '\n[timezone]\nname = "Nowhere/Special"\n');
    const e = await loadError(() => w.load());
    assert.equal(e.message, `${p}:3:1: "Nowhere/Special" is not an IANA time zone name, e.g. "Europe/Berlin"`);
  }));

test('a missing companion key is blamed on the key that needs it', () =>
  withWorld(async (w) => {
    const f = w.write('home/.coi/config.toml', '[tool]\nname = "custom"\n');
    await assert.rejects(w.load(), (e) => isCoiError(e) && e.message === `${f}:2:1: tool.name = "custom" needs tool.binary, the program to run`);
    await assert.rejects(w.load({ env: { COI_TOOL: 'custom' } }), (e) => isCoiError(e) && e.message.startsWith('environment variable COI_TOOL: tool.name = "custom" needs'));
  }));

test('the legacy .coi.toml is refused with the way to migrate', () =>
  withWorld(async (w) => {
    w.write('ws/.coi.toml', '');
    const e = await loadError(() => w.load());
    assert.match(e.message, /\.coi\.toml: the single-file project config is no longer read; move it to .*\.coi\/config\.toml/);
  }));
