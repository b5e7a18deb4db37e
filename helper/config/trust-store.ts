/**
 * `~/.coi/trust.json`: per real workspace path, the SHA-256 of the privileged
 * project settings the user approved. Written atomically (temp file + rename)
 * and readable only by the user. An unreadable store trusts nothing.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

const entry = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  trusted_at: z.string(),
  /** The keys approved, for `coi trust --list` (the hash is what counts). */
  settings: z.array(z.string()).default(() => []),
});
const store = z.object({ version: z.literal(1), workspaces: z.record(z.string(), entry) });

export type TrustEntry = z.output<typeof entry>;
export type TrustStore = z.output<typeof store>;

export function trustStorePath(home: string): string {
  return join(home, '.coi', 'trust.json');
}

export function emptyTrustStore(): TrustStore {
  return { version: 1, workspaces: {} };
}

/** The store, or an empty one with the reason when the file is damaged (never throws for content). */
export async function readTrustStore(home: string): Promise<{ store: TrustStore; problem?: string }> {
  const file = trustStorePath(home);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { store: emptyTrustStore() };
    return { store: emptyTrustStore(), problem: `cannot read ${file}: ${(e as Error).message}` };
  }
  try {
    const r = store.safeParse(JSON.parse(text));
    if (r.success) return { store: r.data };
    return { store: emptyTrustStore(), problem: `${file} is not a trust store this version understands; no project is trusted until it is fixed or removed` };
  } catch {
    return { store: emptyTrustStore(), problem: `${file} is not valid JSON; no project is trusted until it is fixed or removed` };
  }
}

export async function writeTrustStore(home: string, s: TrustStore): Promise<void> {
  const file = trustStorePath(home);
  await mkdir(join(home, '.coi'), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, file);
}
