/** Entry point of dist/helper.js: the `coi` CLI, or with --stdio the extension's JSON-RPC server. */
// Loaded by mode (require: esbuild initialises each on first use): the CLI does not pay for the server's modules.
/* eslint-disable @typescript-eslint/no-require-imports */
const runCli = (argv: string[]): Promise<number> => (require('./cli/cli') as typeof import('./cli/cli')).runCli(argv);
const runStdioServer = (): void => (require('./server/stdio') as typeof import('./server/stdio')).runStdioServer();
/* eslint-enable @typescript-eslint/no-require-imports */

// A reader that went away (`coi list | head`) is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

// Once nothing is left to do, exit at once: left to itself Node then frees the whole heap page by
// page, 25-45 ms of a warm `coi run` (about a tenth of it) for memory the kernel takes back anyway.
process.once('beforeExit', () => process.exit());

const argv = process.argv.slice(2);
if (argv[0] === '--stdio') {
  runStdioServer();
} else {
  runCli(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`coi: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
