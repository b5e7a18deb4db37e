/**
 * Asking before something that cannot be undone. The answer is one line read
 * from stdin (a terminal, or a pipe: `echo y | coi …`); no answer — stdin
 * closed or not given — is a no.
 */
import * as readline from 'node:readline';
import type { CliContext } from './command';

export function confirm(ctx: CliContext, question: string, input: NodeJS.ReadableStream = process.stdin): Promise<boolean> {
  ctx.err(`${question} [y/N] `);
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input, terminal: false });
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(/^\s*(y|yes)\s*$/i.test(line));
    });
    rl.once('close', () => {
      if (!answered) {
        ctx.err('\n');
        resolve(false);
      }
    });
  });
}
