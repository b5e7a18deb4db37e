import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { decideRestart, defaultRestartPolicy, recentCrashes, RestartPolicy } from '../../extension/helper/restartPolicy';

const policy: RestartPolicy = { maxCrashes: 5, windowMs: 180_000, baseDelayMs: 250, maxDelayMs: 8_000 };

test('the default policy is 5 crashes in 3 minutes', () => {
  assert.equal(defaultRestartPolicy.maxCrashes, 5);
  assert.equal(defaultRestartPolicy.windowMs, 180_000);
});

test('a first crash is restarted at once-ish, later ones back off exponentially up to the cap', () => {
  const t = 1_000_000;
  const delays = [1, 2, 3, 4, 5].map((n) => {
    const crashes = Array.from({ length: n }, (_, i) => t + i * 1000);
    const d = decideRestart(crashes, t + (n - 1) * 1000, policy);
    assert.equal(d.action, 'restart');
    return d.action === 'restart' ? d.delayMs : -1;
  });
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000]);
  const capped = decideRestart([t, t + 1, t + 2, t + 3, t + 4], t + 5, { ...policy, maxDelayMs: 1500 });
  assert.deepEqual(capped, { action: 'restart', delayMs: 1500, crashesInWindow: 5 });
});

test('the sixth crash inside the window gives up, with a reason a person understands', () => {
  const t = 5_000_000;
  const crashes = [t, t + 10_000, t + 20_000, t + 30_000, t + 40_000, t + 50_000];
  const d = decideRestart(crashes, t + 50_000, policy);
  assert.equal(d.action, 'give-up');
  assert.equal(d.crashesInWindow, 6);
  assert.equal(d.action === 'give-up' && d.reason, 'the COI helper crashed 6 times in 3 minutes');
});

test('crashes older than the window are forgotten: a helper that crashes now and then keeps being restarted', () => {
  // One crash every 40 s for an hour: never more than 5 in any 3-minute window.
  let history: number[] = [];
  for (let i = 0; i < 90; i++) {
    const now = i * 40_000;
    history = recentCrashes([...history, now], now, policy);
    const d = decideRestart(history, now, policy);
    assert.equal(d.action, 'restart', `crash ${i} at ${now} ms`);
    assert.ok(history.length <= 5, 'the kept history stays bounded');
  }
});

test('a crash exactly one window old no longer counts; future timestamps are ignored', () => {
  const now = 10_000_000;
  assert.deepEqual(recentCrashes([now - 180_000, now - 179_999, now + 5], now, policy), [now - 179_999]);
  const d = decideRestart([], now, policy);
  assert.deepEqual(d, { action: 'restart', delayMs: 0, crashesInWindow: 0 });
});
