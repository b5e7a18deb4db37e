/** Appending delegations to /etc/subuid and /etc/subgid, atomically, once. */
import { promises as fs } from 'node:fs';
import { subidDelegates, subidLine } from '../sandbox/idmap';

export async function delegateId(file: string, id: number): Promise<boolean> {
  const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? '' : Promise.reject(e)));
  if (subidDelegates(text, id)) return false;
  const next = `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${subidLine(id)}\n`;
  const tmp = `${file}.coi-tmp`;
  await fs.writeFile(tmp, next, { mode: 0o644 });
  await fs.rename(tmp, file);
  return true;
}
