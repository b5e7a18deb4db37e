/** Group lookups from /etc/group (Node has no getgrnam). */
import { readFileSync } from 'node:fs';

export function parseGroupFile(text: string): Map<string, { gid: number; members: string[] }> {
  const groups = new Map<string, { gid: number; members: string[] }>();
  for (const line of text.split('\n')) {
    const [name, , gid, members] = line.split(':');
    if (!name || gid === undefined || !/^\d+$/.test(gid)) continue;
    groups.set(name, { gid: Number(gid), members: (members ?? '').split(',').filter(Boolean) });
  }
  return groups;
}

export function groupId(name: string, file = '/etc/group'): number | undefined {
  try {
    return parseGroupFile(readFileSync(file, 'utf8')).get(name)?.gid;
  } catch {
    return undefined;
  }
}

/** Home directory of a uid, from /etc/passwd (the guard writes session saves there as root). */
export function homeOfUid(uid: number, file = '/etc/passwd'): string | undefined {
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 6 && Number(f[2]) === uid && f[5]) return f[5];
    }
  } catch {
    // no passwd file: no home
  }
  return undefined;
}
