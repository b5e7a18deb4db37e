/** The package version, stamped in by esbuild (see build.mjs); "dev" when run unbundled. */
declare const __COI_VERSION__: string | undefined;
export const COI_VERSION: string = typeof __COI_VERSION__ === 'string' ? __COI_VERSION__ : 'dev';

/**
 * Which build of the code this is: a hash of the helper's sources, stamped in
 * by build.mjs. The version stays the same while the code changes (a rebuilt
 * or updated extension), and a guard left running from an older build would
 * enforce old rules; set-up compares builds to replace it. A hash of the
 * sources, not of the bundle file, so a minified and a plain bundle of the
 * same code are the same build.
 */
declare const __COI_BUILD__: string | undefined;
export const COI_BUILD: string | undefined = typeof __COI_BUILD__ === 'string' ? __COI_BUILD__ : undefined;
