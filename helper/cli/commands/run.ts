import { CoiError, ErrorCodes } from '../../errors';
import { Command, parseFlags } from '../command';
import { launchManager } from '../sandboxes';

export const runCommand: Command = {
  name: 'run',
  summary: "Run a command in a fresh sandbox and exit with its exit code (the sandbox is deleted, workspace changes stay)",
  usage: 'coi run [--workspace P] [--image NAME] "shell command"  |  coi run [flags] -- CMD ARGS…',
  async run(args, ctx) {
    const dash = args.indexOf('--');
    const flagArgs = dash >= 0 ? args.slice(0, dash) : args;
    const { values, positionals } = parseFlags(this, flagArgs, { workspace: { type: 'string', short: 'w' }, image: { type: 'string' } }, true);
    let argv: string[];
    if (dash >= 0) {
      if (positionals.length > 0) throw new CoiError(ErrorCodes.INVALID_INPUT, `unexpected "${positionals[0]}" before --\nusage: ${this.usage}`);
      argv = args.slice(dash + 1);
    } else if (positionals.length === 1) {
      argv = ['sh', '-c', positionals[0]!];
    } else {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `give the command as one quoted string or after --\nusage: ${this.usage}`);
    }
    // `coi run` prints only what the command prints.
    const mgr = await launchManager(ctx, values.workspace ?? process.cwd(), values.image ? { image: values.image } : {}, { quiet: true });
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      return await mgr.run(values.workspace ?? process.cwd(), argv, {
        stdout: process.stdout,
        stderr: process.stderr,
        signal: ac.signal,
        ...(process.stdin.isTTY ? {} : { stdin: process.stdin }),
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};
