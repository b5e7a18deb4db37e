import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as esbuild from 'esbuild';

interface Manifest {
  main: string;
  engines: { vscode: string };
  activationEvents: string[];
  contributes: {
    commands: { command: string; title: string; category?: string }[];
    views: Record<string, { id: string }[]>;
    viewsContainers: { activitybar: { id: string; title: string }[] };
    menus: Record<string, { command: string; when?: string }[]>;
  };
}
const manifest = JSON.parse(readFileSync('package.json', 'utf8')) as Manifest;
const contributed = manifest.contributes.commands.map((c) => c.command);

test('activation is lazy: no eager event, only what the view and commands imply', () => {
  // VS Code 1.74+ derives onView:/onCommand: from contributes.views/commands, so the list may be empty.
  const [major, minor] = /(\d+)\.(\d+)/.exec(manifest.engines.vscode)!.slice(1).map(Number) as [number, number];
  assert.ok(major > 1 || minor >= 74, `engines.vscode ${manifest.engines.vscode} must be >= 1.74 for implicit activation events`);
  for (const e of manifest.activationEvents) {
    assert.ok(e === 'onView:coi.sandboxes' || (e.startsWith('onCommand:') && contributed.includes(e.slice('onCommand:'.length))), `unexpected activation event ${e}`);
  }
});

test('the COI view container holds the Sandboxes view', () => {
  assert.deepEqual(manifest.contributes.viewsContainers.activitybar.map((c) => [c.id, c.title]), [['coi', 'COI']]);
  assert.deepEqual(manifest.contributes.views.coi?.map((v) => v.id), ['coi.sandboxes']);
});

test('every command the extension registers is contributed with category COI, and the other way round', () => {
  // Features register their commands in their own modules (extension/alerts/…), with the same `command(` helper.
  const source = ['extension/extension.ts', 'extension/alerts/index.ts'].map((f) => readFileSync(f, 'utf8')).join('\n');
  const registered = [...source.matchAll(/\bcommand\('(coi\.[\w.]+)'/g)].map((m) => m[1]!);
  assert.deepEqual([...registered].sort(), [...contributed].sort());
  for (const c of manifest.contributes.commands) assert.equal(c.category, 'COI', c.command);
  const titles = Object.fromEntries(manifest.contributes.commands.map((c) => [c.command, c.title]));
  assert.equal(titles['coi.showHelperInfo'], 'Show Helper and Incus Versions');
  assert.equal(titles['coi.setup'], 'Set Up This Machine');
  assert.equal(titles['coi.openWorkspace'], 'Open Workspace in COI Sandbox');
});

test('menus only name contributed commands and only apply to our view', () => {
  for (const [where, items] of Object.entries(manifest.contributes.menus)) {
    for (const item of items) {
      assert.ok(contributed.includes(item.command), `${where}: ${item.command} is not contributed`);
      if (where.startsWith('view/')) assert.match(item.when ?? '', /view == coi\.sandboxes/, `${where}: ${item.command}`);
    }
  }
});

test('the extension bundle takes only the protocol from the helper, never code that reaches Incus, the guard or the host', async () => {
  const r = await esbuild.build({ entryPoints: ['extension/extension.ts'], bundle: true, platform: 'node', format: 'cjs', external: ['vscode'], write: false, metafile: true, logLevel: 'silent' });
  const helperInputs = Object.keys(r.metafile.inputs).filter((p) => p.startsWith('helper/')).sort();
  // The health report's schema is part of the protocol (health/check); its text rendering is pure, and
  // so is the lazy value the schemas are built with.
  assert.deepEqual(helperInputs, ['helper/errors.ts', 'helper/health/render.ts', 'helper/health/schema.ts', 'helper/lazy.ts', 'helper/protocol/framing.ts', 'helper/protocol/methods.ts', 'helper/protocol/rpc.ts', 'helper/rpc/connection.ts']);
  assert.ok(!Object.keys(r.metafile.inputs).some((p) => /node_modules\/(ws|execa|smol-toml)\//.test(p)), 'no helper-only dependency');
});
