/** The package version, stamped in by esbuild (see build.mjs); "dev" when run unbundled. */
declare const __COI_VERSION__: string | undefined;
export const COI_VERSION: string = typeof __COI_VERSION__ === 'string' ? __COI_VERSION__ : 'dev';

/**
 * Which build of the bundle this process runs: a hash of its own script file.
 * The version stays the same while the code changes (a rebuilt or updated
 * extension), and a guard left running from an older build would enforce old
 * rules; set-up compares builds to replace it.
 */
export function buildOf(script: string | undefined = process.argv[1]): string | undefined {
  if (!script) return undefined;
  try {
    // Required lazily: the extension bundle imports this module too and never needs it.
    const { createHash } = require('node:crypto') as typeof import('node:crypto');
    const { readFileSync } = require('node:fs') as typeof import('node:fs');
    return createHash('sha256').update(readFileSync(script)).digest('hex').slice(0, 12);
  } catch {
    return undefined;
  }
}
