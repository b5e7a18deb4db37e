import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { sandboxFromInstance } from '../../../helper/sandbox/labels';
import { DEFAULT_NETWORK, parseNetworkLabel } from '../../../helper/sandbox/network-label';
import { buildInstanceSpec, SandboxSpecInput } from '../../../helper/sandbox/spec';
import { hostVethName } from '../../../helper/sandbox/naming';
import { buildMember, endingRun, devicesToAttach, memberOf, POOL_LABELS, poolCleanable, poolKey, poolSpecOf, poolSpecSchema } from '../../../helper/pool/spec';
import type { InstanceFull } from '../../../helper/incus/types';

const input = (over: Partial<SandboxSpecInput> = {}): SandboxSpecInput => ({
  name: 'coi-abcdef12-1',
  image: 'coi',
  pool: 'coi',
  bridge: 'coibr0',
  workspace: '/home/u/proj',
  slot: 1,
  kind: 'run',
  tool: 'claude',
  persistent: false,
  session: 's1',
  profile: 'default',
  ownerUid: 1000,
  ownerHome: '/home/u',
  launcherPid: 42,
  idmap: { kind: 'shift' },
  protectedPaths: ['.git/hooks'],
  mounts: [],
  nesting: false,
  network: DEFAULT_NETWORK,
  now: new Date('2026-01-01T00:00:00Z'),
  ...over,
});
const where = { prefix: 'coi-', workspaceHash: 'abcdef12', workspace: '/home/u/proj', image: 'coi', storagePool: 'coi', bridge: 'coibr0' };

test('the pool spec holds what cannot change on a running container, and no label', () => {
  const spec = poolSpecOf(buildInstanceSpec(input({ limits: { config: { 'limits.memory': '2GiB' }, rootDevice: { size: '10GiB' } } })), where);
  assert.equal(spec.config['security.privileged'], 'false');
  assert.equal(spec.config['limits.memory'], '2GiB');
  assert.deepEqual(spec.rootDevice, { size: '10GiB' });
  assert.ok(!Object.keys(spec.config).some((k) => k.startsWith('user.')));
  assert.deepEqual(Object.keys(spec.disks).sort(), ['protect-_git_hooks', 'workspace']);
  assert.equal(poolSpecSchema.safeParse(spec).success, true);
});

test('the key depends on the settings, not on the slot, the session or the kind of launch', () => {
  const a = poolSpecOf(buildInstanceSpec(input()), where);
  const b = poolSpecOf(buildInstanceSpec(input({ name: 'coi-abcdef12-2', slot: 2, session: 's2', kind: 'shell', launcherPid: 7 })), where);
  assert.equal(poolKey(a), poolKey(b));
  const c = poolSpecOf(buildInstanceSpec(input({ nesting: true })), where);
  assert.notEqual(poolKey(a), poolKey(c));
  const d = poolSpecOf(buildInstanceSpec(input({ idmap: { kind: 'raw', rawIdmap: 'uid 0 1000\ngid 0 1000' } })), where);
  assert.notEqual(poolKey(a), poolKey(d));
});

test('the guard refuses specs that would make a privileged or unknown container', () => {
  const ok = poolSpecOf(buildInstanceSpec(input()), where);
  const bad = (over: Record<string, unknown>) => poolSpecSchema.safeParse({ ...ok, ...over }).success;
  assert.equal(bad({ config: { ...ok.config, 'security.privileged': 'true' } }), false);
  assert.equal(bad({ config: { ...ok.config, 'raw.lxc': 'lxc.apparmor.profile=unconfined' } }), false);
  assert.equal(bad({ config: { ...ok.config, 'raw.idmap': 'both 0 0' } }), false);
  assert.equal(bad({ disks: { ...ok.disks, x: { type: 'unix-char', source: '/dev/kvm', path: '/dev/kvm' } } }), false);
  assert.equal(bad({ disks: { ...ok.disks, workspace: { type: 'disk', source: '/', path: '/workspace' } } }), false, 'the workspace disk is the workspace');
  assert.equal(bad({ prefix: 'Bad/../' }), false);
});

test('a member is labelled from creation, fenced with an allowlist that allows nothing, and named like the sandbox', () => {
  const spec = poolSpecOf(buildInstanceSpec(input()), where);
  const m = buildMember({ name: 'coi-abcdef12-1', spec, fingerprint: 'f'.repeat(64), fillerPid: 9, scope: 'sc', now: new Date() });
  const c = m.config!;
  assert.equal(c['user.coi.managed'], 'true');
  assert.equal(c[POOL_LABELS.state], 'filling');
  assert.equal(c[POOL_LABELS.key], poolKey(spec));
  assert.equal(c['user.coi.guard-scope'], 'sc');
  assert.equal(c['user.coi.workspace'], undefined, 'no workspace label: not a sandbox yet');
  const net = parseNetworkLabel(c['user.coi.network']);
  assert.ok(net.ok && net.label.mode === 'allowlist' && net.label.domains.length === 0 && net.label.cidrs.length === 0);
  assert.deepEqual(m.source, { type: 'image', fingerprint: 'f'.repeat(64) });
  assert.equal(m.devices!.eth0!.host_name, hostVethName('coi-abcdef12-1'));
  assert.equal(m.devices!.workspace!.source, '/home/u/proj');
});

test('listings leave untaken members out and show taken ones by workspace and slot', () => {
  const spec = poolSpecOf(buildInstanceSpec(input()), where);
  const member = buildMember({ name: 'coi-abcdef12-1', spec, fingerprint: 'f', fillerPid: 9, scope: '', now: new Date() });
  const inst = (config: Record<string, string>): InstanceFull => ({ name: 'coi-abcdef12-1', status: 'Running', config, devices: {}, created_at: '' }) as unknown as InstanceFull;
  assert.equal(sandboxFromInstance(inst({ ...member.config!, [POOL_LABELS.state]: 'idle' })), undefined);
  const taken = sandboxFromInstance(inst({ ...member.config!, ...buildInstanceSpec(input()).config!, [POOL_LABELS.state]: 'taken' }));
  assert.equal(taken?.workspace, '/home/u/proj');
  assert.equal(taken?.slot, 1);
});

test('coi clean takes every untaken member and the taken ones whose launch died', () => {
  const base = { key: 'k', fingerprint: 'f', status: 'Running', scope: '' } as const;
  const alive = (pid: number) => pid === 1;
  const out = poolCleanable(
    [
      { ...base, name: 'coi-a-1', state: 'idle', adopted: false },
      { ...base, name: 'coi-a-2', state: 'filling', fillerPid: 99, adopted: false },
      { ...base, name: 'coi-a-3', state: 'taken', launcherPid: 99, adopted: false },
      { ...base, name: 'coi-a-4', state: 'taken', launcherPid: 1, adopted: false },
      { ...base, name: 'coi-a-5', state: 'taken', launcherPid: 99, adopted: true },
      { ...base, name: 'other-1', state: 'idle', adopted: false },
    ],
    'coi-',
    alive,
  );
  assert.deepEqual(out.map((o) => o.name), ['coi-a-1', 'coi-a-2', 'coi-a-3']);
  assert.match(out[1]!.reason, /guard died/);
});

test('memberOf ignores instances without pool labels, and the SSH proxy is attached at take', () => {
  assert.equal(memberOf({ name: 'x', status: 'Running', config: { 'user.coi.managed': 'true' } } as unknown as InstanceFull), undefined);
  const cold = buildInstanceSpec(input({ sshAgentSocket: '/tmp/agent.sock' }));
  assert.deepEqual(Object.keys(devicesToAttach(cold)), ['ssh-agent']);
});

test('a warm coi run whose coi process is gone is listed as stopping (the guard is deleting it), nothing else is', () => {
  const run = { kind: 'run', state: 'running', launcherPid: 41 };
  const taken = { [POOL_LABELS.state]: 'taken' };
  const alive = (pid: number) => pid === 42;
  assert.equal(endingRun(run, taken, alive)?.state, 'stopping');
  assert.equal(endingRun({ ...run, launcherPid: 42 }, taken, alive)?.state, 'running', 'its coi run still runs');
  assert.equal(endingRun({ ...run, kind: 'shell' }, taken, alive)?.state, 'running', 'a shell outlives its launcher');
  assert.equal(endingRun(run, {}, alive)?.state, 'running', 'a cold run is deleted by its own coi, not the guard');
  assert.equal(endingRun(undefined, taken, alive), undefined);
});
