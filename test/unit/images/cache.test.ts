import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { readCacheIndex, writeCacheIndex } from '../../../helper/images/builder';
import { AGENT_SOURCES, agentImageRecipe, NPM_SOURCE } from '../../../helper/images/recipe';

test('the cache keeps one build of coi: its tarball, its index and the agent packages it used; coi-base is left alone', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coi-cache-'));
  try {
    const images = path.join(dir, 'images');
    const agents = path.join(dir, 'agents');
    mkdirSync(images);
    mkdirSync(agents);
    const recipe = agentImageRecipe({
      alias: 'coi',
      base: { alias: 'coi-base', fingerprint: 'f'.repeat(64) },
      agents: [
        { ...NPM_SOURCE, version: '10.9.9', platformVersion: '10.9.9' },
        { ...AGENT_SOURCES.claude!, version: '2.0.0', platformVersion: '2.0.0' },
      ],
    });
    for (const f of [`coi-${recipe.hash}.tar`, 'coi-0123456789abcdef.tar', 'coi-0123456789abcdef.json', 'coi-base-0123456789abcdef.tar', 'coi-mine.tar']) writeFileSync(path.join(images, f), '');
    for (const f of ['npm-10.9.9.tgz', 'anthropic-ai-claude-code-linux-x64-2.0.0.tgz', 'anthropic-ai-claude-code-linux-x64-1.0.0.tgz']) writeFileSync(path.join(agents, f), '');
    await writeCacheIndex(dir, 'coi', recipe, `coi-${recipe.hash}.tar`);
    assert.deepEqual(readdirSync(images).sort(), [`coi-${recipe.hash}.tar`, `coi-${recipe.layerHash}.json`, 'coi-base-0123456789abcdef.tar', 'coi-mine.tar'].sort());
    assert.deepEqual(readdirSync(agents).sort(), ['anthropic-ai-claude-code-linux-x64-2.0.0.tgz', 'npm-10.9.9.tgz']);
    const idx = await readCacheIndex(dir, 'coi', recipe.layerHash);
    assert.equal(idx?.hash, recipe.hash);
    assert.deepEqual(idx?.agents.map((a) => `${a.tool}@${a.version}`), ['npm@10.9.9', 'claude@2.0.0']);
    rmSync(path.join(images, `coi-${recipe.hash}.tar`));
    assert.equal(await readCacheIndex(dir, 'coi', recipe.layerHash), undefined, 'an index whose tarball is gone is no index');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
