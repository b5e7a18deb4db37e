import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { IncusClient } from '../../helper/incus/client';
import { SandboxChanged, SandboxKill, SandboxList, SandboxOpen } from '../../helper/protocol/methods';
import { call, onNotify } from '../../helper/protocol/rpc';
import { HELPER, requireIncus } from './support';

const PREFIX = `coi-r${randomBytes(2).toString('hex')}-`;
const root = mkdtempSync('/tmp/coi-rpc-');
let c: IncusClient;

before(async () => {
  c = await requireIncus();
});
after(async () => {
  for (const i of await c.listInstances().catch(() => [])) if (i.name.startsWith(PREFIX)) await c.deleteInstance(i.name, { force: true }).catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

test('the helper opens a sandbox over JSON-RPC and reports it live, also when it is killed behind its back', async () => {
  const home = path.join(root, 'home');
  const ws = path.join(root, 'ws');
  mkdirSync(path.join(home, '.coi'), { recursive: true });
  mkdirSync(ws);
  writeFileSync(path.join(home, '.coi', 'config.toml'), '[container]\nimage = "coi-base"\n[tool]\nname = "shell"\n');
  const child = spawn(process.execPath, [HELPER, '--stdio'], { env: { ...process.env, HOME: home, COI_CONTAINER_PREFIX: PREFIX }, stdio: ['pipe', 'pipe', 'inherit'] });
  const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const changes: { name: string; action: string; state: string | null }[] = [];
  const waiters: (() => void)[] = [];
  onNotify(conn, SandboxChanged, (n) => {
    changes.push({ name: n.name, action: n.action, state: n.sandbox?.state ?? null });
    waiters.splice(0).forEach((w) => w());
  });
  conn.listen();
  const until = async (pred: () => boolean, what: string) => {
    const deadline = Date.now() + 30_000;
    while (!pred()) {
      if (Date.now() > deadline) assert.fail(`no notification: ${what}; got ${JSON.stringify(changes)}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  try {
    const { sandbox } = await call(conn, SandboxOpen, { workspace: ws });
    assert.equal(sandbox.state, 'running');
    assert.equal(sandbox.workspace, ws);
    await until(() => changes.some((x) => x.name === sandbox.name && x.action === 'instance-started' && x.state !== null), 'started');
    const listed = await call(conn, SandboxList, {});
    assert.ok(listed.sandboxes.some((s) => s.name === sandbox.name));

    // Behind the helper's back: Incus stops and deletes it.
    await c.setState(sandbox.name, 'stop', { force: true });
    await until(() => changes.some((x) => x.name === sandbox.name && x.action === 'instance-stopped'), 'stopped');
    await c.deleteInstance(sandbox.name, { force: true }).catch(() => undefined);
    await until(() => changes.some((x) => x.name === sandbox.name && x.action === 'instance-deleted' && x.state === null), 'deleted');
    const after = await call(conn, SandboxList, {});
    assert.ok(!after.sandboxes.some((s) => s.name === sandbox.name), 'the list no longer has it');

    await assert.rejects(call(conn, SandboxKill, { name: sandbox.name }), /no sandbox named/);
    await assert.rejects(call(conn, SandboxOpen, { workspace: '/' } as never), /refusing to share \//);
  } finally {
    conn.dispose();
    child.kill();
  }
});
