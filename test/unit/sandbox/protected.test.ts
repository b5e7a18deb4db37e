import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { CoiError } from '../../../helper/errors';
import { DEFAULT_PROTECTED_PATHS, preparePlaceholders } from '../../../helper/sandbox/protected';

function scratch(): string {
  return mkdtempSync(path.join(tmpdir(), 'coi-protected-'));
}

test('placeholders: directories and files made where nothing was, settings files valid JSON', async () => {
  const ws = scratch();
  try {
    const created = await preparePlaceholders(ws, ['.git/hooks', '.git/config', '.claude/settings.json']);
    assert.deepEqual(created, ['.git', '.git/hooks', '.git/config', '.claude', '.claude/settings.json']);
    assert.ok(lstatSync(path.join(ws, '.git/hooks')).isDirectory());
    assert.ok(lstatSync(path.join(ws, '.git/config')).isFile());
    assert.equal(readFileSync(path.join(ws, '.claude/settings.json'), 'utf8'), '{}\n');
    assert.deepEqual(await preparePlaceholders(ws, ['.git/hooks', '.git/config']), [], 'a second run finds them all');
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
});

// ci22: two `coi pool warm` of one workspace at once, and one failed with "EEXIST: mkdir …/.git".
test('placeholders: launches of one workspace preparing at the same time all succeed', async () => {
  for (let round = 0; round < 20; round++) {
    const ws = scratch();
    try {
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => preparePlaceholders(ws, DEFAULT_PROTECTED_PATHS)));
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.deepEqual(failed.map((r) => String(r.reason)), [], `round ${round}`);
      // Each placeholder was made by exactly one of them.
      const made = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []));
      assert.equal(made.length, new Set(made).size, `round ${round}: ${made.join(', ')}`);
      for (const p of DEFAULT_PROTECTED_PATHS) assert.ok(lstatSync(path.join(ws, p)), p);
    } finally {
      rmSync(ws, { recursive: true, force: true });
    }
  }
});

test('placeholders: a symlink on the way is refused, and so is a file where a directory must be', async () => {
  const ws = scratch();
  try {
    symlinkSync('/etc', path.join(ws, '.husky'));
    await assert.rejects(preparePlaceholders(ws, ['.husky']), (e: unknown) => e instanceof CoiError && /\.husky is a symbolic link/.test(e.message));
    await assert.rejects(preparePlaceholders(ws, ['.husky/pre-commit']), (e: unknown) => e instanceof CoiError && /symbolic link/.test(e.message));
    await preparePlaceholders(ws, ['.git/config']);
    await assert.rejects(preparePlaceholders(ws, ['.git/config/x']), (e: unknown) => e instanceof CoiError && /is not a directory/.test(e.message));
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
});
