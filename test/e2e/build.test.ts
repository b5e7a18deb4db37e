// "COI: Build Image" in the real VS Code against the real Incus: the workspace's
// .coi/config.toml names a custom image built from coi-base by a few commands
// (about 20 s). The build shows as a progress notification, its log in the
// "COI Build" output channel, and ends with the image in Incus; a second build
// is cancelled from the notification while a command runs, and its temporary
// container is gone and the image's alias unmoved.
// Screenshots: test-artifacts/e2e/build/.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { IncusClient } from '../../helper/incus/client';
import { UnixSocketTransport } from '../../helper/incus/transport';
import { HELPER } from '../integration/support';
import { VsCode, waitFor } from './harness';

const IMAGE = `coi-e2eb-${randomBytes(3).toString('hex')}`;
const root = mkdtempSync(join(tmpdir(), 'coi-e2e-build-'));
const home = join(root, 'home');
const folder = join(root, 'build-project');
const incus = new IncusClient(new UnixSocketTransport());
let vs: VsCode;
let builtFingerprint = '';
const temporaries: string[] = [];

function configure(commands: string[]): void {
  writeFileSync(
    join(folder, '.coi', 'config.toml'),
    `[container]\nimage = "${IMAGE}"\n\n[container.build]\nbase = "coi-base"\ncommands = ${JSON.stringify(commands)}\n`,
  );
}

/** What the "COI Build" channel holds (its log file under the profile's logs), all of it, not only the lines on screen. */
function channelText(): string {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'COI Build.log') found.push(p);
    }
  };
  walk(join(vs.tmp, 'user-data', 'logs'));
  return found.map((f) => readFileSync(f, 'utf8')).join('\n');
}

async function startBuild(): Promise<void> {
  await vs.runCommand('COI: Build Image', { opensInput: true });
  await vs.pickQuickItem('Build');
}

before(async () => {
  mkdirSync(join(home, '.coi'), { recursive: true });
  mkdirSync(join(folder, '.coi'), { recursive: true });
  vs = await VsCode.start({ name: 'build', folder, env: { HOME: home } });
  // Once the COI view shows, the extension's commands are in the Palette.
  await vs.openViewContainer('COI', 'coi');
});

after(async () => {
  await vs?.stop();
  for (const t of temporaries) await incus.deleteInstance(t, { force: true }).catch(() => undefined);
  try {
    execFileSync(process.execPath, [HELPER, 'image', 'delete', IMAGE], { env: { ...process.env, HOME: home }, stdio: 'ignore' });
  } catch {
    // not built
  }
  rmSync(root, { recursive: true, force: true });
});

test('"Build Image": a cancellable progress notification, the log in "COI Build", the image in Incus', async () => {
  configure(['echo e2e-build-says-hello', 'mkdir -p /opt/e2e && touch /opt/e2e/marker']);
  await startBuild();
  const progress = await vs.waitForNotification(/COI: Building image/, 30_000);
  assert.deepEqual(await vs.notificationButtons(progress), ['Cancel'], 'the progress can be cancelled');
  await vs.screenshot('build-progress', progress);

  const done = await vs.waitForNotification(new RegExp(`COI: image ${IMAGE} built`), 300_000);
  await vs.screenshot('build-done', done);
  assert.deepEqual(await vs.notificationButtons(done), ['Show Build Log']);
  const message = (await done.locator('.notification-list-item-message').textContent()) ?? '';
  builtFingerprint = /built: ([0-9a-f]{12})/.exec(message)?.[1] ?? '';
  const alias = await incus.imageAlias(IMAGE);
  assert.ok(alias?.startsWith(builtFingerprint) && builtFingerprint, `the alias ${IMAGE} points at the image the message names (${alias} vs ${message})`);

  // The channel is shown while the build runs; its last lines are on screen.
  await vs.page.locator('.part.panel').filter({ hasText: 'COI Build' }).first().waitFor({ timeout: 10_000 });
  assert.match(await vs.panelText(), new RegExp(`COI: image ${IMAGE} built`));
  const log = channelText();
  for (const step of ['container', 'commands', 'image', 'publish']) assert.match(log, new RegExp(`==> \\[${step}\\] `), `step ${step} in the channel`);
  assert.match(log, /^.* {4}e2e-build-says-hello$/m, 'the build\'s own output, under its step');
  temporaries.push(...[...log.matchAll(/temporary container (coi-build-\S+)/g)].map((m) => m[1]!));
  await vs.screenshot('build-log');
});

test('Cancel in the notification while a command runs: the build stops, its temporary container is removed, the alias stays', async () => {
  configure(['echo e2e-slow-started', 'sleep 600']);
  const before = channelText().length;
  await startBuild();
  const progress = await vs.waitForNotification(/COI: Building image/, 30_000);
  // The command runs: its output is in the channel, and the notification is at its step.
  await waitFor('the slow command running', () => /^.* {4}e2e-slow-started$/m.test(channelText().slice(before)), 180_000, 500);
  await vs.notification(/COI: Building image: commands: 2 command\(s\) as root/).first().waitFor({ timeout: 10_000 });
  await vs.screenshot('cancel-before', progress);
  const temp = /temporary container (coi-build-\S+)/.exec(channelText().slice(before))?.[1];
  assert.ok(temp, 'the channel names the temporary container');
  temporaries.push(temp);
  assert.equal(await incus.instanceExists(temp), true);

  await progress.locator('.notification-list-item-buttons-container .monaco-button', { hasText: 'Cancel' }).click();
  const cancelled = await vs.waitForNotification(/build cancelled during step "commands"/, 120_000);
  await vs.screenshot('cancelled', cancelled);
  assert.equal(await incus.instanceExists(temp), false, 'the temporary container is gone');
  assert.ok((await incus.imageAlias(IMAGE))?.startsWith(builtFingerprint), 'the alias still points at the first build');
  await waitFor('no progress notification left', async () => (await vs.notification(/COI: Building image/).count()) === 0, 10_000);
  assert.match(channelText().slice(before), /cancel requested/);
});
