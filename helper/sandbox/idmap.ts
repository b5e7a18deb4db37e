/**
 * How the workspace's files keep the host user's ownership.
 *
 * Host uid == the container's code uid (1000): an idmapped mount (shift=true),
 * nothing else needed. Any other uid (root included): raw.idmap maps the host
 * user onto `code`, which Incus permits only for ids delegated to root in
 * /etc/subuid and /etc/subgid (read at each start: no restart needed). Set-up
 * delegates root and the admin group; the guard delegates a connecting user's
 * own ids on request.
 */
export type IdmapMode = { kind: 'shift' } | { kind: 'raw'; rawIdmap: string };

export function idmapMode(hostUid: number, hostGid: number, codeUid = 1000, codeGid = 1000, disableShift = false): IdmapMode {
  if (hostUid === codeUid && hostGid === codeGid && !disableShift) return { kind: 'shift' };
  return { kind: 'raw', rawIdmap: `uid ${hostUid} ${codeUid}\ngid ${hostGid} ${codeGid}` };
}

/** True when /etc/subuid (or subgid) text delegates `id` to root. */
export function subidDelegates(text: string, id: number, owner = 'root'): boolean {
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if (who !== owner || start === undefined || count === undefined) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isInteger(s) && Number.isInteger(c) && id >= s && id < s + c) return true;
  }
  return false;
}

/** The line that delegates one id, appended when missing. */
export function subidLine(id: number, owner = 'root'): string {
  return `${owner}:${id}:1`;
}
