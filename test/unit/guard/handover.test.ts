import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { guardHandover } from '../../../helper/guard/daemon';

test('set-up keeps a guard of its own build and replaces one of another build or of none', () => {
  assert.equal(guardHandover('abc', 'abc'), 'keep');
  assert.equal(guardHandover('abc', 'def'), 'replace');
  assert.equal(guardHandover(undefined, 'def'), 'replace', 'a guard too old to report its build');
  assert.equal(guardHandover('abc', undefined), 'keep', 'without a build of our own there is nothing to compare');
});
