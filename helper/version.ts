/** The package version, stamped in by esbuild (see build.mjs); "dev" when run unbundled. */
declare const __COI_VERSION__: string | undefined;
export const COI_VERSION: string = typeof __COI_VERSION__ === 'string' ? __COI_VERSION__ : 'dev';
