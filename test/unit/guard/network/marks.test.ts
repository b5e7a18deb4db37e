import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { CoiError } from '../../../../helper/errors';
import { chooseTag, HOST_TAG, markOf } from '../../../../helper/guard/network/marks';

test('the host guard is tag 1; a scoped guard takes the lowest free odd tag from 3; none left is an error with a remedy', () => {
  assert.equal(chooseTag('', new Set([1, 3])), HOST_TAG);
  assert.equal(chooseTag('t', new Set([0, 2, 3])), 5);
  assert.equal(chooseTag('t', new Set()), 3);
  const all = new Set(Array.from({ length: 64 }, (_, i) => i));
  assert.throws(() => chooseTag('t', all), (e: unknown) => e instanceof CoiError && /every network mark tag is taken/.test(e.message) && !!e.remedy);
});

test('no tagged mark is a key of a guard from before tags, whose mask 0x0fff0000 sees bit 26 set', () => {
  for (const tag of [1, 3, 5, 63]) {
    for (const id of [1, 2, 1023]) {
      const seenByOld = markOf(tag, id) & 0x0fff0000;
      assert.ok((seenByOld & (1 << 26)) !== 0, `tag ${tag} id ${id}`);
    }
  }
  // Old marks (host ids, scoped 2049+) are never keys of a tagged table (odd tags only).
  for (const old of [1 << 16, 2049 << 16, 2100 << 16]) assert.equal((old >>> 26) % 2, 0);
});
