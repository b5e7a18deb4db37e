import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { findPeerPid, parseProcStatus } from '../../../helper/guard/peer';
import { parseGroupFile } from '../../../helper/host/groups';

const ss = [
  'u_str ESTAB 0      0                * 17747 * 17044 users:(("python3",pid=14320,fd=3))',
  'u_str ESTAB 0      0      /run/coi/guard.sock 17044 * 17747 users:(("node",pid=14313,fd=21))',
  'u_str ESTAB 0      0      @/tmp/.X11-unix/X0 555 * 556',
].join('\n');

test('findPeerPid follows our inode to the peer inode and its owner', () => {
  assert.deepEqual(findPeerPid(ss, 17044), { peerInode: 17747, pid: 14320 });
  assert.equal(findPeerPid(ss, 99), undefined, 'unknown socket');
  assert.equal(findPeerPid(ss, 555), undefined, 'peer without a process');
});

test('parseProcStatus reads the real uid and every group', () => {
  const status = 'Name:\tnode\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 994 1000 \n';
  assert.deepEqual(parseProcStatus(status), { uid: 1000, gids: [1000, 24, 994] });
  assert.equal(parseProcStatus('garbage'), undefined);
});

test('parseGroupFile maps names to gids and members, skipping junk lines', () => {
  const g = parseGroupFile('root:x:0:\nincus-admin:x:994:alice,bob\n#comment\nbad:x:notanumber:\n');
  assert.equal(g.get('incus-admin')?.gid, 994);
  assert.deepEqual(g.get('incus-admin')?.members, ['alice', 'bob']);
  assert.equal(g.has('bad'), false);
});
