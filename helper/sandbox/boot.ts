/**
 * Waiting until a container has finished booting. Starting the tool earlier
 * races boot: systemd-tmpfiles empties /tmp (and with it tmux's socket), and
 * the network may not be configured yet. Images without systemd only need
 * their `code` user. Whether the image boots systemd is told by PID 1's
 * executable: /run/systemd/system appears only some way into boot, and a
 * probe that ran earlier would have declared a half-booted container ready.
 */
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';

export const BOOT_PROBE = [
  'sh',
  '-c',
  'case "$(readlink /proc/1/exe)" in */systemd) s=$(systemctl is-system-running --wait 2>/dev/null); case "$s" in running|degraded) exit 0;; *) echo "$s"; exit 3;; esac;; *) test -d /home/code;; esac',
];

export async function waitBooted(incus: IncusClient, name: string, timeoutSec: number): Promise<void> {
  const deadline = Date.now() + timeoutSec * 1000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await incus.exec(name, BOOT_PROBE, { timeoutMs: Math.max(1_000, deadline - Date.now()) });
      if (r.exitCode === 0) return;
      last = `exit ${r.exitCode}${r.stdout.trim() ? `, system ${r.stdout.trim()}` : ''}`;
    } catch (e) {
      last = toCoiError(e).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new CoiError(ErrorCodes.TIMEOUT, `${name} did not become ready within ${timeoutSec} s (${last})`);
}
