import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { emptyMerged, Merged, mergeInto, MergeMode, stripDeletionMarkers } from '../../../helper/config/merge';
import type { LayerKind } from '../../../helper/config/provenance';

function layers(mode: MergeMode, ...patches: Array<[LayerKind, Record<string, unknown>]>): Merged {
  const m = emptyMerged();
  for (const [layer, p] of patches) mergeInto(m, p, () => ({ layer }), mode);
  return m;
}

test('scalars: the higher layer wins when it sets the key; an absent key is not a value', () => {
  const m = layers('layer', ['default', { container: { image: 'coi', persistent: false } }], ['user', { container: { image: 'mine' } }]);
  assert.deepEqual(m.value, { container: { image: 'mine', persistent: false } });
  assert.equal(m.provenance['container.image']!.layer, 'user');
  assert.equal(m.provenance['container.persistent']!.layer, 'default');
});

test('scalars: false overrides true (booleans are not "unset" when false)', () => {
  const m = layers('layer', ['user', { network: { block_private_networks: true } }], ['project', { network: { block_private_networks: false } }]);
  assert.equal((m.value.network as Record<string, unknown>).block_private_networks, false);
  assert.equal(m.provenance['network.block_private_networks']!.layer, 'project');
});

test('tables merge deeply at every level', () => {
  const m = layers('layer', ['default', { limits: { cpu: { count: '', allowance: '' }, memory: { limit: '' } } }], ['user', { limits: { cpu: { count: '2' } } }], ['env', { limits: { memory: { limit: '1GiB' } } }]);
  assert.deepEqual(m.value.limits, { cpu: { count: '2', allowance: '' }, memory: { limit: '1GiB' } });
  assert.equal(m.provenance['limits.cpu.count']!.layer, 'user');
  assert.equal(m.provenance['limits.cpu.allowance']!.layer, 'default');
  assert.equal(m.provenance['limits.memory.limit']!.layer, 'env');
});

test('defaults.forward_env is a de-duplicated union across layers', () => {
  const m = layers('layer', ['user', { defaults: { forward_env: ['A', 'B'] } }], ['project', { defaults: { forward_env: ['B', 'C'] } }]);
  assert.deepEqual((m.value.defaults as Record<string, unknown>).forward_env, ['A', 'B', 'C']);
  const p = m.provenance['defaults.forward_env']!;
  assert.equal(p.layer, 'project');
  assert.deepEqual(p.also?.map((s) => s.layer), ['user']);
});

test('environment maps merge key-wise and "" removes a key set below', () => {
  const m = layers('layer', ['user', { defaults: { environment: { A: '1', B: '2', C: '3' } } }], ['project', { defaults: { environment: { B: '', C: 'three', D: '4' } } }]);
  assert.deepEqual((m.value.defaults as Record<string, unknown>).environment, { A: '1', C: 'three', D: '4' });
  assert.equal(m.provenance['defaults.environment.A']!.layer, 'user');
  assert.equal(m.provenance['defaults.environment.C']!.layer, 'project');
  assert.equal(m.provenance['defaults.environment.B'], undefined);
});

test('env_commands follow the same map rule', () => {
  const m = layers('layer', ['user', { defaults: { env_commands: { T: 'gh auth token' } } }], ['coi-config', { defaults: { env_commands: { T: '' } } }]);
  assert.deepEqual((m.value.defaults as Record<string, unknown>).env_commands, {});
});

test('arrays replace wholesale (allowed_domains, protected_paths, pre_launch)', () => {
  const m = layers(
    'layer',
    ['default', { network: { allowed_domains: ['a.com', 'b.com'] }, security: { protected_paths: ['.git/hooks', '.vscode'] }, tool: { pre_launch: ['x'] } }],
    ['user', { network: { allowed_domains: ['c.com'] }, security: { protected_paths: ['.husky'] }, tool: { pre_launch: [] } }],
  );
  assert.deepEqual((m.value.network as Record<string, unknown>).allowed_domains, ['c.com']);
  assert.deepEqual((m.value.security as Record<string, unknown>).protected_paths, ['.husky']);
  assert.deepEqual((m.value.tool as Record<string, unknown>).pre_launch, []);
  assert.equal(m.provenance['network.allowed_domains']!.layer, 'user');
  assert.equal(m.provenance['network.allowed_domains']!.also, undefined);
});

test('mounts and additional_protected_paths are appended across layers', () => {
  const a = { host: '/a', container: '/a' };
  const b = { host: '/b', container: '/b' };
  const m = layers('layer', ['default', { mounts: [], security: { additional_protected_paths: [] } }], ['user', { mounts: [a], security: { additional_protected_paths: ['x'] } }], ['project', { mounts: [b], security: { additional_protected_paths: ['y'] } }]);
  assert.deepEqual(m.value.mounts, [a, b]);
  assert.deepEqual((m.value.security as Record<string, unknown>).additional_protected_paths, ['x', 'y']);
  assert.equal(m.provenance.mounts!.layer, 'project');
  assert.deepEqual(m.provenance.mounts!.also?.map((s) => s.layer), ['user'], 'the empty default contributed nothing');
});

test('between a profile and its parent every array replaces, mounts and forward_env too', () => {
  const m = layers('inherit', ['profile', { mounts: [{ host: '/a', container: '/a' }], defaults: { forward_env: ['A'] } }], ['profile', { mounts: [], defaults: { forward_env: ['B'] } }]);
  assert.deepEqual(m.value.mounts, []);
  assert.deepEqual((m.value.defaults as Record<string, unknown>).forward_env, ['B']);
});

test('within a profile chain "" stays as a marker so the resolved profile still removes the key from the config', () => {
  const chain = layers('inherit', ['profile', { defaults: { environment: { A: '1', B: '2' } } }], ['profile', { defaults: { environment: { A: '' } } }]);
  assert.deepEqual((chain.value.defaults as Record<string, unknown>).environment, { A: '', B: '2' });
  const config = layers('layer', ['user', { defaults: { environment: { A: 'user', C: '3' } } }]);
  mergeInto(config, chain.value, () => ({ layer: 'profile' }), 'layer');
  assert.deepEqual((config.value.defaults as Record<string, unknown>).environment, { B: '2', C: '3' });
  const lone = layers('layer', ['user', { defaults: { environment: { Z: '' } } }]);
  stripDeletionMarkers(lone.value, lone.provenance);
  assert.deepEqual((lone.value.defaults as Record<string, unknown>).environment, {});
});

test('merging never aliases the patch: later changes to the result leave layers intact', () => {
  const user = { network: { allowed_domains: ['a.com'] }, mounts: [{ host: '/a', container: '/a' }] };
  const m = layers('layer', ['user', user]);
  ((m.value.network as Record<string, unknown>).allowed_domains as string[]).push('evil.com');
  (m.value.mounts as unknown[]).push({});
  assert.deepEqual(user, { network: { allowed_domains: ['a.com'] }, mounts: [{ host: '/a', container: '/a' }] });
});
