/**
 * When to restart the helper after it died, as a pure function of the times of
 * its recent crashes: the process manager records, this decides. No vscode, no
 * timers, no processes here, so the unit tests can walk through any history.
 */

export interface RestartPolicy {
  /** How many crashes inside `windowMs` are tolerated; the next one gives up. */
  maxCrashes: number;
  windowMs: number;
  /** Delay before the first restart; doubled for each further crash in the window. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** 5 crashes in 3 minutes, then the user decides ("Restart Helper"). */
export const defaultRestartPolicy: RestartPolicy = {
  maxCrashes: 5,
  windowMs: 3 * 60_000,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
};

export type RestartDecision =
  | { action: 'restart'; delayMs: number; crashesInWindow: number }
  | { action: 'give-up'; crashesInWindow: number; reason: string };

/**
 * `crashes` are the times (ms) of every crash so far, including the one just
 * seen; `now` is the current time. Crashes older than the window are forgotten.
 */
export function decideRestart(crashes: readonly number[], now: number, policy: RestartPolicy = defaultRestartPolicy): RestartDecision {
  const recent = recentCrashes(crashes, now, policy);
  const n = recent.length;
  if (n > policy.maxCrashes) {
    return {
      action: 'give-up',
      crashesInWindow: n,
      reason: `the COI helper crashed ${n} times in ${formatWindow(policy.windowMs)}`,
    };
  }
  const delayMs = n <= 0 ? 0 : Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1));
  return { action: 'restart', delayMs, crashesInWindow: n };
}

/** The crashes still inside the window: what a caller keeps, so the history stays bounded. */
export function recentCrashes(crashes: readonly number[], now: number, policy: RestartPolicy = defaultRestartPolicy): number[] {
  return crashes.filter((t) => t <= now && now - t < policy.windowMs);
}

function formatWindow(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}`;
  return `${Math.round(ms / 1000)} seconds`;
}
