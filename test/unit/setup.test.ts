import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { setupCommandLine, shellQuote } from '../../extension/setup';
import { helperSpawnArgs, parseHelperLogLine } from '../../extension/helper/process';

test('set-up runs the bundled helper with the editor\'s own Node, through sudo unless already root', () => {
  assert.equal(
    setupCommandLine({ execPath: '/usr/share/code/code', helperJs: '/home/u/.vscode/extensions/coi.coi-vscode-0.1.0/dist/helper.js', isRoot: false }),
    'sudo env ELECTRON_RUN_AS_NODE=1 /usr/share/code/code /home/u/.vscode/extensions/coi.coi-vscode-0.1.0/dist/helper.js setup',
  );
  assert.equal(setupCommandLine({ execPath: '/usr/bin/node', helperJs: '/x/helper.js', isRoot: true }), 'env ELECTRON_RUN_AS_NODE=1 /usr/bin/node /x/helper.js setup');
});

test('paths with spaces or quotes are quoted so the shell sees one word', () => {
  assert.equal(shellQuote("/opt/My Code/it's"), `'/opt/My Code/it'\\''s'`);
  assert.equal(shellQuote('$(rm -rf ~)'), `'$(rm -rf ~)'`);
  assert.match(setupCommandLine({ execPath: '/opt/VS Code/code', helperJs: '/h.js', isRoot: false }), /^sudo env ELECTRON_RUN_AS_NODE=1 '\/opt\/VS Code\/code' \/h\.js setup$/);
});

test('the helper is spawned as plain Node in Electron too, with --stdio', () => {
  const a = helperSpawnArgs('/ext/dist/helper.js', '/usr/share/code/code', { PATH: '/bin' });
  assert.deepEqual(a, { command: '/usr/share/code/code', args: ['/ext/dist/helper.js', '--stdio'], env: { PATH: '/bin', ELECTRON_RUN_AS_NODE: '1' } });
});

test('helper log lines keep their level and lose the timestamp the output channel adds again', () => {
  assert.deepEqual(parseHelperLogLine('2026-01-02T03:04:05.678Z warn  [helper] slow answer'), { level: 'warn', message: '[helper] slow answer' });
  assert.deepEqual(parseHelperLogLine('2026-01-02T03:04:05.678Z info  [helper] helper ready (pid 1)'), { level: 'info', message: '[helper] helper ready (pid 1)' });
  assert.deepEqual(parseHelperLogLine('(node:12) Warning: something'), { level: 'warn', message: '(node:12) Warning: something' });
});
