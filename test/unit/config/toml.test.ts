import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { isCoiError } from '../../../helper/errors';
import { buildKeyIndex, formatPath, locate, parseToml } from '../../../helper/config/toml';

test('key paths are formatted with dots, [n] for array elements and quotes for odd keys', () => {
  assert.equal(formatPath(['network', 'mode']), 'network.mode');
  assert.equal(formatPath(['mounts', 1, 'host']), 'mounts[1].host');
  assert.equal(formatPath(['defaults', 'environment', 'A.B']), 'defaults.environment."A.B"');
});

test('the key index finds keys under headers, dotted keys, arrays of tables and inline tables', () => {
  const text = [
    'top = 1', // 1
    '[network]', // 2
    '  mode = "open"  # comment', // 3
    'logging.enabled = false', // 4
    '[[mounts]]', // 5
    'host = "/a"', // 6
    '[[mounts]]', // 7
    'host = "/b"', // 8
    '[defaults]', // 9
    'environment = { A = "1", "B.C" = "2" }', // 10
    'forward_env = [', // 11
    '  "X", # one', // 12
    '  "Y",', // 13
    ']', // 14
    '[tool]', // 15
    'pre_launch = ["""', // 16
    'fake = "not a key"', // 17
    '"""]', // 18
    "name = 'claude'", // 19
  ].join('\n');
  const ix = buildKeyIndex(text);
  assert.deepEqual(ix.get('top'), { line: 1, column: 1 });
  assert.deepEqual(ix.get('network'), { line: 2, column: 1 });
  assert.deepEqual(ix.get('network.mode'), { line: 3, column: 3 });
  assert.deepEqual(ix.get('network.logging.enabled'), { line: 4, column: 9 });
  assert.deepEqual(ix.get('mounts[0].host'), { line: 6, column: 1 });
  assert.deepEqual(ix.get('mounts[1].host'), { line: 8, column: 1 });
  assert.deepEqual(ix.get('defaults.environment.A'), { line: 10, column: 17 });
  assert.deepEqual(ix.get('defaults.environment."B.C"'), { line: 10, column: 26 });
  assert.deepEqual(ix.get('defaults.forward_env[1]'), { line: 13, column: 3 });
  assert.equal(ix.get('fake'), undefined, 'text inside a multi-line string is not a key');
  assert.equal(ix.get('tool.fake'), undefined);
  assert.deepEqual(ix.get('tool.name'), { line: 19, column: 1 });
  // An unknown deeper path falls back to its nearest written ancestor.
  assert.deepEqual(locate(ix, ['network', 'logging', 'path']), { line: 4, column: 1 });
});

test('a TOML syntax error names file, line and column', () => {
  try {
    parseToml('[network]\nmode = "open\n', '/x/config.toml');
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isCoiError(e));
    assert.match(e.message, /^\/x\/config\.toml:2:\d+: invalid TOML: /);
    assert.equal(e.code, 'INVALID_INPUT');
  }
});

test('parsed tables are plain objects (smol-toml builds null-prototype ones)', () => {
  const { data } = parseToml('[a]\nb = { c = 1 }\n', 'f');
  assert.equal(Object.getPrototypeOf(data.a), Object.prototype);
});

test('the key index never loops on text it does not understand', () => {
  for (const junk of ['[', '= = =', 'a = [1, @]', 'a = {b = }', '"unterminated', '[[x', ']]]']) buildKeyIndex(junk);
});
