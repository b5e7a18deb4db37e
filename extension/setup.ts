/**
 * "Set Up This Machine": the command line the terminal runs. Pure, so the unit
 * tests check its quoting and elevation without a terminal.
 */

/** Quotes one word for a POSIX shell (and fish, zsh): inside single quotes nothing is special. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs the bundled helper's `setup` as root with the Node that runs the extension
 * (desktop VS Code's Electron binary with ELECTRON_RUN_AS_NODE=1, or code-server's
 * node), so it needs no `node` on PATH. `env` carries the variable through sudo,
 * which resets the environment.
 */
export function setupCommandLine(opts: { execPath: string; helperJs: string; isRoot: boolean }): string {
  const words = ['env', 'ELECTRON_RUN_AS_NODE=1', opts.execPath, opts.helperJs, 'setup'].map(shellQuote);
  return (opts.isRoot ? words : ['sudo', ...words]).join(' ');
}
