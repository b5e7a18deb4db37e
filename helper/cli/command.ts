/**
 * The shape of a `coi` command: one file per command under commands/, each a
 * thin front door onto core functions. Flags are parsed with node:util's
 * strict parseArgs so that a typo is an error, not a silently ignored flag.
 */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { CoiError, ErrorCodes } from '../errors';
import { IncusClient } from '../incus/client';
import type { Log } from '../log';

export interface CliContext {
  env: NodeJS.ProcessEnv;
  out: (text: string) => void;
  err: (text: string) => void;
  log: Log;
  incus(): IncusClient;
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Internal commands the help does not list. */
  hidden?: boolean;
  run(args: string[], ctx: CliContext): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs that reports mistakes as INVALID_INPUT with the command's usage. */
export function parseFlags<O extends Options>(cmd: Pick<Command, 'name' | 'usage'>, args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `${(e as Error).message.replace(/\. To specify.*$/s, '')}\nusage: ${cmd.usage}`);
  }
}

export function formatOption(cmd: Pick<Command, 'name' | 'usage'>, value: string | undefined): 'text' | 'json' {
  if (value === undefined || value === 'text') return 'text';
  if (value === 'json') return 'json';
  throw new CoiError(ErrorCodes.INVALID_INPUT, `--format takes text or json, not "${value}"\nusage: ${cmd.usage}`);
}
