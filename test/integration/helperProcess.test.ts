// HelperProcess against the real bundled helper (dist/helper.js --stdio), with
// real crashes (SIGKILL). Incus and the guard are pointed at sockets that do not
// exist: this is about the process, not about what the helper reaches.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { HelperInfo } from '../../helper/protocol/methods';
import { HelperLog, HelperProcess, HelperState, HelperUnavailableError, helperSpawnArgs } from '../../extension/helper/process';

const helperJs = resolve('dist/helper.js');
const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const tmp = mkdtempSync(join(tmpdir(), 'coi-helperproc-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const env = { ...process.env, INCUS_SOCKET: join(tmp, 'no-incus.sock'), COI_GUARD_SOCKET: join(tmp, 'no-guard.sock') };

function collectingLog(): HelperLog & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  return { lines, trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function make(opts: Partial<ConstructorParameters<typeof HelperProcess>[0]> = {}) {
  const log = collectingLog();
  const proc = new HelperProcess({ ...helperSpawnArgs(helperJs, process.execPath, env), log, ...opts });
  return { proc, log };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('nothing runs until the first request, which starts the helper and gets a validated answer', async () => {
  const { proc, log } = make();
  try {
    assert.deepEqual(proc.state, { kind: 'stopped' });
    assert.equal(proc.pid, undefined);
    const info = await proc.request(HelperInfo, {});
    assert.equal(info.helper.version, version);
    assert.equal(info.helper.pid, proc.pid);
    assert.equal(info.incus.reachable, false);
    assert.equal(info.guard.reachable, false);
    // stderr reaches the log with its level, without the helper's own timestamp.
    await until('the ready line', () => log.lines.find((l) => /^info \[helper\] helper ready \(pid \d+\)$/.test(l)));
  } finally {
    await proc.dispose();
  }
});

test('a killed helper is restarted by itself and answers again', async () => {
  const { proc, log } = make();
  try {
    await proc.request(HelperInfo, {});
    const first = proc.pid!;
    const started: number[] = [];
    proc.onDidStart((pid) => started.push(pid));
    process.kill(first, 'SIGKILL');
    const second = await until('a new helper', () => started[0]);
    assert.notEqual(second, first);
    assert.ok(alive(second));
    assert.ok(log.lines.some((l) => l.startsWith('warn helper died (killed by SIGKILL); restarting in 250 ms')), log.lines.join('\n'));
    const info = await proc.request(HelperInfo, {});
    assert.equal(info.helper.pid, second);
  } finally {
    await proc.dispose();
  }
});

test('past the crash limit it stays down, says why, and "Restart Helper" brings it back', async () => {
  const { proc, log } = make({ policy: { maxCrashes: 1, windowMs: 60_000, baseDelayMs: 10, maxDelayMs: 10 } });
  const states: HelperState[] = [];
  proc.onDidChangeState((s) => states.push(s));
  try {
    await proc.request(HelperInfo, {});
    process.kill(proc.pid!, 'SIGKILL');
    const restarted = await until('the restart', () => states.find((s, i) => s.kind === 'running' && i > 0 && states[i - 1]?.kind === 'restarting'));
    assert.equal(restarted.kind, 'running');
    process.kill(proc.pid!, 'SIGKILL');
    const failed = await until('giving up', () => (proc.state.kind === 'failed' ? proc.state : undefined));
    assert.equal(failed.reason, 'the COI helper crashed 2 times in 1 minute');
    assert.equal(failed.lastExit, 'killed by SIGKILL');
    assert.ok(log.lines.some((l) => l.startsWith('error helper died (killed by SIGKILL); the COI helper crashed 2 times')));
    await assert.rejects(proc.request(HelperInfo, {}), (e: unknown) => {
      assert.ok(e instanceof HelperUnavailableError);
      assert.deepEqual(e.remedy, { title: 'Restart Helper', command: 'coi.restartHelper' });
      return true;
    });
    await proc.restart();
    assert.equal(proc.state.kind, 'running');
    assert.equal((await proc.request(HelperInfo, {})).helper.pid, proc.pid);
  } finally {
    await proc.dispose();
  }
});

test('a helper that cannot even be spawned gives up after the limit instead of looping', async () => {
  const { proc } = make({ command: join(tmp, 'no-such-node'), policy: { maxCrashes: 2, windowMs: 60_000, baseDelayMs: 5, maxDelayMs: 5 } });
  try {
    await assert.rejects(proc.request(HelperInfo, {}));
    const failed = await until('giving up', () => (proc.state.kind === 'failed' ? proc.state : undefined));
    assert.match(failed.lastExit, /could not run it: .*ENOENT/);
  } finally {
    await proc.dispose();
  }
});

test('dispose stops the helper and refuses to start another', async () => {
  const { proc } = make();
  await proc.request(HelperInfo, {});
  const pid = proc.pid!;
  await proc.dispose();
  assert.equal(alive(pid), false);
  assert.equal(proc.state.kind, 'disposed');
  await assert.rejects(proc.request(HelperInfo, {}), HelperUnavailableError);
});
