/**
 * `coi health` against this machine: healthy after set-up (or degraded for
 * exactly one reason while the guard does not enforce network rules yet),
 * unhealthy with a privileged default profile, degraded on a `dir` pool, and
 * --fix removing leftovers of ours. Every JSON report is validated against
 * the schema. The probe target is the dead-end network's private host.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { healthReport, HealthReport } from '../../helper/health/schema';
import type { IncusClient } from '../../helper/incus/client';
import type { Profile } from '../../helper/incus/types';
import { DEAD_END_HOSTS } from '../../helper/setup/names';
import { CoiResult, HELPER, requireIncus } from './support';

const PREFIX = `coi-h${randomBytes(2).toString('hex')}-`;
const TARGET = DEAD_END_HOSTS.private;
const root = mkdtempSync('/tmp/coi-health-it-');
chmodSync(root, 0o755);
let c: IncusClient;

function homeWith(name: string, toml: string): string {
  const home = path.join(root, name);
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  writeFileSync(path.join(home, '.coi', 'config.toml'), toml);
  return home;
}
const BASE_TOML = '[container]\nimage = "coi-base"\n\n[tool]\nname = "shell"\n';

function health(home: string, args: string[], timeoutMs = 240_000): Promise<CoiResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HELPER, 'health', ...args], { cwd: root, env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`coi health did not finish in ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** The JSON report, validated against the schema, with the exit code. */
async function report(home: string, args: string[] = []): Promise<{ code: number; r: HealthReport; stderr: string }> {
  const res = await health(home, ['--format', 'json', ...args]);
  let json: unknown;
  try {
    json = JSON.parse(res.stdout);
  } catch {
    assert.fail(`coi health printed no JSON (exit ${res.code}): ${res.stdout}\n${res.stderr}`);
  }
  const parsed = healthReport().safeParse(json);
  assert.ok(parsed.success, `the report matches its schema: ${JSON.stringify(parsed.error?.issues)}`);
  return { code: res.code, r: parsed.data, stderr: res.stderr };
}

const notOk = (r: HealthReport) => Object.entries(r.checks).filter(([, c]) => c.status !== 'ok').map(([k, c]) => `${k} ${c.status}: ${c.message}`);

/** What must be true when the only thing short of healthy is network isolation not wired into the guard yet. */
function assertHealthyButForNetworkIsolation(code: number, r: HealthReport, except: string[] = []): void {
  const rest = notOk(r).filter((l) => !l.startsWith('network_restriction ') && !except.some((k) => l.startsWith(`${k} `)));
  assert.deepEqual(rest, [], 'every other check is ok');
  const net = r.checks.network_restriction!;
  const caps = (r.checks.guard!.details.capabilities as string[] | undefined) ?? [];
  if (caps.includes('network')) {
    assert.equal(net.status, 'ok', net.message);
    assert.match(net.message, /restricted mode holds/);
  } else {
    // The one reason this machine is not healthy yet: the guard does not enforce network rules.
    assert.equal(net.status, 'warning');
    assert.match(net.message, /the guard does not enforce network rules yet \(it lists no "network" capability\)/);
    assert.equal(net.details.target, TARGET);
  }
}

before(async () => {
  c = await requireIncus();
});

after(async () => {
  for (const i of await c.listInstances().catch(() => [])) if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

describe('coi health', () => {
  test('on this machine after set-up: healthy, or degraded only because the guard does not enforce network rules yet', async () => {
    const home = homeWith('ok', BASE_TOML);
    const { code, r } = await report(home, ['--target', TARGET]);
    assertHealthyButForNetworkIsolation(code, r);
    assert.equal(code, r.checks.network_restriction!.status === 'ok' ? 0 : 1);
    assert.equal(r.status, code === 0 ? 'healthy' : 'degraded');
    const live = r.checks.live_sandbox!;
    assert.equal(live.status, 'ok');
    assert.match(String(live.details.container), new RegExp(`^${PREFIX}`), 'the temporary sandbox is named like ours');
    assert.equal((await c.listInstances()).filter((i) => i.name.startsWith(PREFIX)).length, 0, 'and it is gone afterwards');
    assert.equal(r.checks.security_posture!.details.sandboxSeccomp, '2', 'the sandbox ran under a seccomp filter');
    for (const k of ['kernel_version', 'incus', 'permissions', 'guard', 'incus_storage_pools', 'network_bridge', 'ip_forwarding', 'nft', 'firewalld', 'privileged_profile', 'image', 'image_age', 'orphaned_resources']) {
      assert.ok(r.checks[k], `${k} is checked`);
    }

    // The text form: one line per check, the fix under what is not ok, the verdict last; same exit code.
    const text = await health(home, ['--target', TARGET]);
    assert.equal(text.code, code);
    assert.match(text.stdout, /^ok {4}kernel_version +Linux /m);
    assert.match(text.stdout, new RegExp(`\\n${r.status}: \\d+ ok, \\d+ warnings?, 0 failed \\(of ${r.summary.total}\\)\\n$`));
    if (code === 1) assert.match(text.stdout, /^WARN {2}network_restriction .*\n +fix: /m);
  });

  test('a privileged default profile: unhealthy (exit 2), naming the profile and how to unset it', async () => {
    const home = homeWith('privileged', BASE_TOML);
    const profile = await c.get<Profile>('/1.0/profiles/default');
    let res: { code: number; r: HealthReport };
    let text: CoiResult;
    try {
      await c.run('PUT', '/1.0/profiles/default', { config: { ...profile.config, 'security.privileged': 'true' }, devices: profile.devices, description: profile.description });
      // Both at once: the window in which the shared default profile is privileged stays short.
      [res, text] = await Promise.all([report(home, ['--no-live']), health(home, ['--no-live'])]);
    } finally {
      await c.run('PUT', '/1.0/profiles/default', { config: profile.config, devices: profile.devices, description: profile.description });
    }
    assert.equal(res.code, 2);
    assert.equal(res.r.status, 'unhealthy');
    const p = res.r.checks.privileged_profile!;
    assert.equal(p.status, 'failed');
    assert.match(p.message, /profile "default"/);
    assert.equal(p.remedy?.shell, 'incus profile unset default security.privileged');
    assert.deepEqual(p.details.profiles, ['default']);
    assert.equal(text.code, 2);
    assert.match(text.stdout, /^FAIL {2}privileged_profile +privileged, so root inside is root on the host: profile "default"\n +fix: .*incus profile unset default security\.privileged/m);
  });

  test('a dir storage pool: degraded (exit 1), saying it is slow; the temporary sandbox starts on it', async () => {
    const pool = `${PREFIX}dir`;
    await c.run('POST', '/1.0/storage-pools', { name: pool, driver: 'dir', config: {}, description: 'coi health test (temporary)' });
    try {
      const home = homeWith('dir', `${BASE_TOML}\n`.replace('[container]\n', `[container]\nstorage_pool = "${pool}"\n`));
      const { code, r } = await report(home, ['--target', TARGET]);
      assert.equal(code, 1, notOk(r).join('\n'));
      const s = r.checks.incus_storage_pools!;
      assert.equal(s.status, 'warning');
      assert.match(s.message, new RegExp(`${pool} uses the dir driver: every launch copies the whole image`));
      assert.match(s.remedy!.title, /btrfs or ZFS/);
      assert.equal(s.details.configured, pool);
      assertHealthyButForNetworkIsolation(code, r, ['incus_storage_pools']);
      assert.equal(r.checks.live_sandbox!.status, 'ok', 'a sandbox starts on the dir pool');
    } finally {
      for (const i of await c.listInstances().catch(() => [])) if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
      await c.run('DELETE', `/1.0/storage-pools/${encodeURIComponent(pool)}`);
    }
  });

  test('--fix removes leftovers of ours and says what it did; --dry-run only says', async () => {
    const home = homeWith('fix', BASE_TOML);
    const dead = spawnSync('true').pid!;
    // A launch killed mid-way: labelled, still "creating", its launcher gone.
    const name = `${PREFIX}0badf00d-1`;
    await c.createInstance({
      name,
      source: { type: 'image', alias: 'coi-base' },
      profiles: ['default'],
      config: { 'user.coi.managed': 'true', 'user.coi.phase': 'creating', 'user.coi.launcher-pid': String(dead), 'user.coi.workspace': root, 'user.coi.slot': '1', 'user.coi.kind': 'shell' },
    });
    const lock = path.join(home, '.coi', 'locks', '0badf00d.lock');
    mkdirSync(path.dirname(lock), { recursive: true });
    writeFileSync(lock, String(dead));

    const found = await report(home, ['--no-live']);
    const o = found.r.checks.orphaned_resources!;
    assert.equal(o.status, 'warning');
    assert.equal(o.fixable, true);
    assert.match(o.message, new RegExp(`sandbox ${name} \\(launch was interrupted\\), launch lock .*0badf00d\\.lock \\(its process is gone\\)`));

    const dry = await report(home, ['--no-live', '--fix', '--dry-run']);
    assert.deepEqual(dry.r.fixes!.filter((f) => f.check === 'orphaned_resources').map((f) => f.outcome), ['dry-run']);
    assert.ok(await c.instanceExists(name), 'a dry run removes nothing');

    const fixed = await report(home, ['--no-live', '--fix']);
    const f = fixed.r.fixes!.find((x) => x.check === 'orphaned_resources')!;
    assert.equal(f.outcome, 'fixed');
    assert.match(f.action, new RegExp(`deleted ${name}; removed .*0badf00d\\.lock`));
    assert.equal(fixed.r.checks.orphaned_resources!.status, 'ok', 'the report after the fix is re-checked');
    assert.equal(await c.instanceExists(name), false);
    assert.equal(existsSync(lock), false);
    // What --fix does not touch is listed with its remedy, not silently ignored.
    for (const x of fixed.r.fixes!.filter((x) => x.outcome === 'skipped')) assert.match(x.action, /not changed automatically; to fix it: /);
  });
});
