// `npm run package` builds the .vsix users install: the manifest, the README, the
// three bundles, the config JSON Schemas (package.json tomlValidation points at
// them) and the icons, nothing else (no sources, no maps, no node_modules).
import { strict as assert } from 'node:assert';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { listZip, packageVsix, repoRoot } from '../support/vsix';

function filesUnder(dir: string, prefix: string): string[] {
  return readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? filesUnder(join(dir, e), `${prefix}${e}/`) : [`${prefix}${e}`]));
}

test('the .vsix holds exactly package.json, README, the three bundles, the codicon font, the config schemas and media/', { timeout: 180_000 }, () => {
  const vsix = packageVsix({ ...process.env, COI_E2E_VSIX: '' });
  const entries = listZip(vsix).sort();
  const expected = [
    '[Content_Types].xml', // vsce's own bookkeeping
    'extension.vsixmanifest',
    'extension/package.json',
    'extension/readme.md',
    'extension/dist/extension.js',
    'extension/dist/helper.js',
    'extension/dist/helper-main.js',
    'extension/dist/webview.js',
    'extension/dist/codicons/codicon.css',
    'extension/dist/codicons/codicon.ttf',
    'extension/dist/coi-config.schema.json',
    'extension/dist/coi-profile.schema.json',
    ...filesUnder(join(repoRoot, 'media'), 'extension/media/'),
  ].sort();
  assert.deepEqual(entries, expected);
});
