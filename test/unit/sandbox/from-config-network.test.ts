/** From the config file to the sandbox's network label: what a user writes in ~/.coi/config.toml reaches the guard. */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { settingsFromConfig } from '../../../helper/sandbox/from-config';
import { withWorld } from '../config/world';

test('[[network.hosts]], block_metadata_endpoint = false and backend = "firewalld" from the user config reach the label', async () => {
  await withWorld(async (w) => {
    w.write(
      'home/.coi/config.toml',
      '[network]\nbackend = "firewalld"\nblock_metadata_endpoint = false\n\n[[network.hosts]]\nip = "10.99.0.2"\nhostnames = ["db.lan"]\nports = [5432]\n',
    );
    const s = settingsFromConfig(await w.load(), {});
    assert.deepEqual(s.network.hosts, [{ ip: '10.99.0.2', names: ['db.lan'], ports: [5432] }]);
    assert.equal(s.network.metadata, true);
    assert.equal(s.network.backend, 'firewalld');
    assert.deepEqual(s.networkWarnings, []);
  });
  await withWorld(async (w) => {
    const s = settingsFromConfig(await w.load(), {});
    assert.equal(s.network.hosts, undefined);
    assert.equal(s.network.metadata, undefined);
    assert.equal(s.network.backend, undefined);
    assert.deepEqual(s.networkWarnings, []);
  });
});
