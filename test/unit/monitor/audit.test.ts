import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { AuditRecord, auditFiles, auditRecord, AuditWriter, followAudit, pruneAudit, readAudit } from '../../../helper/guard/monitor/audit';
import { Deduplicator } from '../../../helper/guard/monitor/dedup';
import type { ThreatEvent } from '../../../helper/guard/monitor/detectors/types';

function event(n: number, over: Partial<ThreatEvent> = {}): ThreatEvent {
  return {
    id: `id-${n}`,
    time: new Date().toISOString(),
    level: 'critical',
    category: 'reverse_shell',
    title: 'Reverse shell: standard streams connected to the network',
    description: `event ${n}`,
    evidence: { rule: 'reverse-shell/shell-stdio-network', key: `k${n}`, process: { pid: n, comm: 'sh', argv: ['sh', '-i'], lineage: [] } },
    detector: 'reverse-shell',
    mitre: ['T1059'],
    ...over,
  };
}

function record(n: number, action = 'killed'): AuditRecord {
  return auditRecord(event(n), 'coi-test-1', action as 'killed');
}

const made: string[] = [];
const tmpDir = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'coi-audit-'));
  made.push(d);
  return d;
};

// In the child: append until killed, acknowledging each record once it is on disk.
async function child(dir: string): Promise<void> {
  const w = await AuditWriter.open({ dir, container: 'coi-test-1' });
  for (let i = 0; ; i++) {
    await w.append(record(i));
    process.stdout.write(`${i}\n`);
  }
}

if (process.env.COI_AUDIT_CHILD) {
  void child(process.env.COI_AUDIT_CHILD);
} else {
  after(() => {
    for (const d of made) fs.rmSync(d, { recursive: true, force: true });
  });

  test('records are appended as JSON lines, read back in order, with hostile strings intact as data', async () => {
    const dir = tmpDir();
    const w = await AuditWriter.open({ dir, container: 'coi-test-1' });
    const hostile = '<img src=x onerror=alert(1)>\x1b[2J\x1b]0;pwned\x07';
    await w.append(auditRecord(event(1, { description: hostile }), 'coi-test-1', 'killed'));
    await w.append(record(2, 'paused'));
    await w.close();
    const text = fs.readFileSync(path.join(dir, 'coi-test-1.jsonl'), 'utf8');
    assert.equal(text.split('\n').length, 3);
    assert.ok(!text.includes('\x1b'), 'control characters are escaped on disk');
    const { records, skipped } = await readAudit(dir, 'coi-test-1');
    assert.equal(skipped, 0);
    assert.deepEqual(records.map((r) => [r.id, r.action]), [['id-1', 'killed'], ['id-2', 'paused']]);
    assert.equal(records[0]?.description, hostile);
    assert.equal(records[0]?.container, 'coi-test-1');
    assert.equal((fs.statSync(path.join(dir, 'coi-test-1.jsonl')).mode & 0o777).toString(8), '600');
    await assert.rejects(auditFiles(dir, '../etc/passwd'));
    await assert.rejects(AuditWriter.open({ dir, container: '../x' }));
  });

  test('a writer killed with SIGKILL loses no acknowledged record, and a torn line is skipped and fenced off', async () => {
    const dir = tmpDir();
    const c = spawn(process.execPath, [__filename], { env: { ...process.env, COI_AUDIT_CHILD: dir }, stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = -1;
    await new Promise<void>((resolve) => {
      let buf = '';
      c.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) acked = Number(l);
        if (acked >= 40) {
          c.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => c.once('exit', r));
    const { records } = await readAudit(dir, 'coi-test-1');
    const ids = new Set(records.map((r) => r.id));
    for (let i = 0; i <= acked; i++) assert.ok(ids.has(`id-${i}`), `acknowledged record ${i} survived the kill`);

    // Simulate a crash mid-line, then a restarted writer.
    fs.appendFileSync(path.join(dir, 'coi-test-1.jsonl'), '{"id":"torn","timesta');
    const w = await AuditWriter.open({ dir, container: 'coi-test-1' });
    await w.append(record(9999));
    await w.close();
    const after = await readAudit(dir, 'coi-test-1');
    assert.equal(after.skipped, 1, `only the torn line is lost: ${JSON.stringify(fs.readFileSync(path.join(dir, 'coi-test-1.jsonl'), 'utf8').split('\n').filter((l) => !l.startsWith('{"id":"id-')))}`);
    assert.equal(after.records[after.records.length - 1]?.id, 'id-9999');
  });

  test('rotation by day and deletion past the retention', async () => {
    const dir = tmpDir();
    let now = new Date('2025-03-01T12:00:00Z');
    const w = await AuditWriter.open({ dir, container: 'coi-test-1', retentionDays: 30, now: () => now });
    await w.append(record(1));
    now = new Date('2025-03-02T00:00:01Z');
    await w.append(record(2));
    now = new Date('2025-03-02T08:00:00Z');
    await w.append(record(3));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['coi-test-1.2025-03-01.jsonl', 'coi-test-1.jsonl']);
    const all = await readAudit(dir, 'coi-test-1');
    assert.deepEqual(all.records.map((r) => r.id), ['id-1', 'id-2', 'id-3'], 'rotated files are read first');
    now = new Date('2025-04-01T00:00:00Z');
    await w.append(record(4));
    await w.close();
    assert.deepEqual(fs.readdirSync(dir).sort(), ['coi-test-1.2025-03-02.jsonl', 'coi-test-1.jsonl'], 'the 03-01 file is past 30 days');
    // A whole-directory prune also drops active files of containers unseen for the retention period.
    fs.writeFileSync(path.join(dir, 'gone-1.jsonl'), '');
    fs.utimesSync(path.join(dir, 'gone-1.jsonl'), new Date('2025-01-01'), new Date('2025-01-01'));
    const removed = await pruneAudit(dir, 30, new Date('2025-05-01T00:00:00Z'));
    assert.deepEqual(removed.map((p) => path.basename(p)).sort(), ['coi-test-1.2025-03-02.jsonl', 'gone-1.jsonl']);
  });

  test('follow yields new records as they land, across a rotation, until aborted', async () => {
    const dir = tmpDir();
    let now = new Date('2025-03-01T12:00:00Z');
    const w = await AuditWriter.open({ dir, container: 'coi-test-1', now: () => now });
    await w.append(record(0));
    const ac = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const r of followAudit(dir, 'coi-test-1', { signal: ac.signal, pollMs: 20 })) {
        got.push(r.id);
        if (got.length === 3) ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 60));
    await w.append(record(1));
    now = new Date('2025-03-02T12:00:00Z');
    await new Promise((r) => setTimeout(r, 60));
    await w.append(record(2));
    await new Promise((r) => setTimeout(r, 60));
    await w.append(record(3));
    await done;
    await w.close();
    assert.deepEqual(got, ['id-1', 'id-2', 'id-3'], 'old records are not replayed; the rotation is followed');
  });

  test('dedup folds the same category:title:key within 30 s and reports again after, with the folded count', () => {
    const d = new Deduplicator(30_000);
    const a = event(1);
    assert.deepEqual(d.check(a, 0), { report: true, folded: 0, key: `${a.category}:${a.title}:k1` });
    assert.equal(d.check({ ...a, id: 'other' }, 1_000).report, false);
    assert.equal(d.check(a, 29_999).report, false);
    assert.equal(d.check(event(2), 5_000).report, true, 'another key is its own event');
    const again = d.check(a, 30_000);
    assert.equal(again.report, true);
    assert.equal(again.folded, 2);
    assert.equal(d.check({ ...a, title: 'other title' }, 30_001).report, true);
    const batch = d.filter([event(7), event(7), event(8)], 40_000);
    assert.deepEqual(batch.report.map((r) => r.event.evidence.key), ['k7', 'k8']);
    assert.equal(batch.folded.length, 1);
    d.sweep(100_000);
    assert.equal(d.size, 0);
    const small = new Deduplicator(30_000, 3);
    for (let i = 0; i < 10; i++) small.check(event(i), 0);
    assert.ok(small.size <= 3, 'bounded');
  });
}
