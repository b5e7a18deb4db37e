import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoiError, ErrorCodes } from '../../../../helper/errors';
import { findOrphans, parseInstalledRules } from '../../../../helper/guard/network/parse';

// `nft -j list ruleset` from the testbed after applying a rendered state with a restricted, an allowlist,
// an open and a hostile-named sandbox plus one boot block, next to an `inet incus` table, and some traffic.
const fixture = readFileSync(join(process.cwd(), 'test', 'fixtures', 'nft', 'ruleset-mixed.json'), 'utf8');
const HOSTILE = 'Bad"; flush ruleset; name';

test('finds every sandbox with rules, its interface, mode and accounting, and skips other tables', () => {
  const r = parseInstalledRules(fixture);
  assert.deepEqual(r.tables, ['inet coi_guard', 'netdev coi_guard_ingress']);
  assert.deepEqual(r.unknown, []);
  const summary = r.sandboxes.map((s) => [s.key, s.hostIface, s.mode ?? null, s.ingress, s.filter, s.bootBlocked]);
  assert.deepEqual(summary, [
    ['Bad___flush_ruleset__name_296f6b34', 'nrxv4', 'restricted', true, true, false],
    ['c-allow', 'nrxv2', 'allowlist', true, true, false],
    ['c-new', 'nrxv5', null, false, false, true],
    ['c-open', 'nrxv3', 'open', true, false, false],
    ['c-restricted', 'nrxv1', 'restricted', true, true, false],
  ]);
  const allow = r.sandboxes.find((s) => s.key === 'c-allow')!;
  assert.deepEqual(allow.objects, [
    'inet coi_guard chain sb_c-allow',
    'inet coi_guard limit lg_c-allow',
    'inet coi_guard set al_c-allow_dns',
    'inet coi_guard set al_c-allow_net',
    'netdev coi_guard_ingress chain in_c-allow',
    'netdev coi_guard_ingress limit lg_c-allow',
  ]);
  const restricted = r.sandboxes.find((s) => s.key === 'c-restricted')!;
  assert.ok((restricted.packets ?? 0) > 0 && (restricted.bytes ?? 0) > 0, 'the accounting counter is read');
  assert.ok(!r.sandboxes.some((s) => s.objects.some((o) => o.includes('incus'))));
});

test('orphans are the installed sandboxes whose container should no longer have rules, hostile names included', () => {
  const r = parseInstalledRules(JSON.parse(fixture));
  assert.deepEqual(findOrphans(r, ['c-allow', 'c-restricted', HOSTILE]).map((s) => s.key), ['c-new', 'c-open']);
  assert.deepEqual(findOrphans(r, ['c-allow', 'c-restricted', 'c-new', 'c-open']).map((s) => s.key), ['Bad___flush_ruleset__name_296f6b34']);
  assert.equal(findOrphans(r, []).length, 5);
});

test('objects in our tables that fit no naming scheme are reported, not attributed', () => {
  const doc = JSON.parse(fixture) as { nftables: unknown[] };
  doc.nftables.push({ chain: { family: 'inet', table: 'coi_guard', name: 'legacy_stuff', handle: 99 } });
  doc.nftables.push({ set: { family: 'inet', table: 'coi_guard', name: 'coi_s_10_0_0_5', handle: 98, type: 'ipv4_addr' } });
  doc.nftables.push({ chain: { family: 'ip', table: 'coi', name: 'forward', handle: 1 } });
  const r = parseInstalledRules(doc);
  assert.deepEqual(r.unknown, ['inet coi_guard chain legacy_stuff', 'inet coi_guard set coi_s_10_0_0_5']);
  assert.equal(r.sandboxes.length, 5);
});

test('an empty ruleset has no tables and no sandboxes; output that is not nft JSON is an error', () => {
  assert.deepEqual(parseInstalledRules('{"nftables": [{"metainfo": {"version": "1.0.6"}}]}'), { tables: [], sandboxes: [], unknown: [] });
  for (const bad of ['not json', '{"x": 1}', '[]']) {
    assert.throws(() => parseInstalledRules(bad), (e: unknown) => e instanceof CoiError && e.code === ErrorCodes.INTERNAL);
  }
});
