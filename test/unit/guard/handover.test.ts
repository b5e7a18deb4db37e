import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { guardHandover } from '../../../helper/guard/daemon';
import { buildOf } from '../../../helper/version';

test('set-up keeps a guard of its own build and replaces one of another build or of none', () => {
  assert.equal(guardHandover('abc', 'abc'), 'keep');
  assert.equal(guardHandover('abc', 'def'), 'replace');
  assert.equal(guardHandover(undefined, 'def'), 'replace', 'a guard too old to report its build');
  assert.equal(guardHandover('abc', undefined), 'keep', 'without a build of our own there is nothing to compare');
});

test('a build id follows the bundle file: same content, same id; changed content, another', () => {
  const dir = mkdtempSync(join(tmpdir(), 'coi-build-'));
  const a = join(dir, 'a.js');
  const b = join(dir, 'b.js');
  writeFileSync(a, 'one');
  writeFileSync(b, 'one');
  assert.equal(buildOf(a), buildOf(b));
  assert.match(buildOf(a)!, /^[0-9a-f]{12}$/);
  writeFileSync(b, 'two');
  assert.notEqual(buildOf(a), buildOf(b));
  assert.equal(buildOf(join(dir, 'missing.js')), undefined);
});
