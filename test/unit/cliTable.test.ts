// The CLI finds a command by the name in its lazy table (helper/cli/cli.ts)
// before loading it: a name that drifted from the command's own would make the
// command unreachable, or run another one.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { allCommands, helpText, tableNames } from '../../helper/cli/cli';

test('each entry of the lazy command table is named as its command, hidden ones too', () => {
  const loaded = allCommands().map((c) => ({ name: c.name, hidden: c.hidden === true }));
  assert.deepEqual(tableNames(), loaded);
  assert.equal(new Set(loaded.map((c) => c.name)).size, loaded.length, 'names are unique');
});

test('the help lists every command but the hidden ones', () => {
  const help = helpText();
  for (const c of allCommands()) assert.equal(new RegExp(`^  ${c.name} `, 'm').test(help), !c.hidden, c.name);
});
