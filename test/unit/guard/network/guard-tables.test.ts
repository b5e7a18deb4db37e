import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { guardTablesIn, renderRemoveScopes, staleScopes, tagsInUse } from '../../../../helper/guard/network/guard-tables';
import { renderRuleset } from '../../../../helper/guard/network/render';
import { tablesFor } from '../../../../helper/guard/network/names';
import type { SandboxNetwork } from '../../../../helper/guard/network/types';

// What `nft list ruleset` prints: the host guard before tags (ids 1, 2), a scoped guard before tags (2049)
// without an owner, a tagged scoped guard of pid 300 (tag 3) with its ingress table, our own table (tag 5),
// and tables that are not a guard's (one only looks like it: another family).
const RULESET = `table inet coi_guard {
	comment "coi guard pid 100"
	chain forward {
		meta mark & 0x0fff0000 vmap { 0x00010000 : jump sb_a, 0x00020000 : jump sb_b }
	}
}
table inet coi_guard_old1 {
	chain forward {
		meta mark & 0x0fff0000 vmap { 0x08010000 : jump sb_c }
	}
}
table netdev coi_guard_ingress_t3 {
	comment "coi guard pid 300"
	chain in_x {
		meta mark set 0x0c010000
	}
}
table inet coi_guard_t3 {
	comment "coi guard pid 300"
	chain forward {
		meta mark & 0xffff0000 vmap { 0x0c010000 : jump sb_d, 0x0c020000 : jump sb_e }
	}
}
table inet coi_guard_mine {
	chain forward {
		meta mark & 0xffff0000 vmap { 0x14010000 : jump sb_f }
	}
}
table inet other {
	chain forward {
		meta mark vmap { 0x1c010000 : jump x }
	}
}
table bridge coi_guard_x {
	comment "coi guard pid 1"
}
`;

test('guard tables are grouped by scope with their owner pid; other families and names are not a guard\'s', () => {
  const found = guardTablesIn(RULESET);
  assert.deepEqual([...found.keys()].sort(), ['', 'mine', 'old1', 't3']);
  assert.deepEqual(found.get('t3')!.tables, [
    { family: 'netdev', name: 'coi_guard_ingress_t3' },
    { family: 'inet', name: 'coi_guard_t3' },
  ]);
  assert.equal(found.get('t3')!.ownerPid, 300);
  assert.equal(found.get('')!.ownerPid, 100);
  assert.equal(found.get('old1')!.ownerPid, undefined);
});

test('tags in use are read from every other guard table\'s vmap, old and new, not from ours or foreign tables', () => {
  assert.deepEqual([...tagsInUse(guardTablesIn(RULESET), 'mine')].sort(), [0, 2, 3]);
});

test('stale scopes: a dead or unknown owner and no instance in the scope; never the host\'s, ours, a live guard\'s or one with sandboxes', () => {
  const found = guardTablesIn(RULESET);
  const stale = (live: number[], inUse: string[], own = 'mine') => staleScopes(found, { ownScope: own, liveGuard: (p) => live.includes(p), scopesInUse: new Set(inUse) }).map((s) => s.scope).sort();
  assert.deepEqual(stale([], []), ['old1', 't3']);
  assert.deepEqual(stale([300], []), ['old1'], 'guard 300 runs');
  assert.deepEqual(stale([], ['t3']), ['old1'], 'an instance of scope t3 still needs its fence');
  assert.deepEqual(stale([], [], 't3'), ['mine', 'old1'], 'never our own');
});

test('the removal script deletes exactly those tables, and applies when they are already gone', () => {
  const found = guardTablesIn(RULESET);
  const script = renderRemoveScopes([found.get('t3')!]);
  assert.equal(script, 'table netdev coi_guard_ingress_t3\ndelete table netdev coi_guard_ingress_t3\ntable inet coi_guard_t3\ndelete table inet coi_guard_t3\n');
  execFileSync('nft', ['-c', '-f', '-'], { input: script });
});

test('a guard\'s rendered tables carry its pid, and the parser reads it back', () => {
  const sb: SandboxNetwork = { container: 'c1', hostIface: 'vethabc', mode: 'restricted', gatewayV4: '10.250.0.1', allowLocalNetwork: false, allowCidrs: [], resolvedIps: [] };
  const script = renderRuleset({ sandboxes: [sb], blockAll: [] }, { now: 0, tables: tablesFor('sx'), tag: 3, owner: 4242 });
  const found = guardTablesIn(script.replace(/^(table \S+ \S+)$/gm, '').replace(/^delete .*$/gm, ''));
  assert.equal(found.get('sx')!.ownerPid, 4242);
  assert.equal(found.get('sx')!.tables.length, 2);
  assert.deepEqual([...found.get('sx')!.tags], [3]);
  execFileSync('nft', ['-c', '-f', '-'], { input: script });
  assert.throws(() => renderRuleset({ sandboxes: [sb], blockAll: [] }, { now: 0, owner: 0 }), /owner pid 0/);
});
