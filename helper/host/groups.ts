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
