import { CoiError, ErrorCodes } from '../../errors';
import { configJsonSchema } from '../../config/jsonschema';
import type { Command } from '../command';

export const schemaCommand: Command = {
  name: 'schema',
  summary: 'Print the JSON Schema of config.toml or of a profile, for editors',
  usage: 'coi schema config|profile',
  async run(args, ctx) {
    const [kind, ...rest] = args;
    if ((kind !== 'config' && kind !== 'profile') || rest.length) {
      throw new CoiError(ErrorCodes.INVALID_INPUT, `schema takes "config" or "profile"\nusage: ${this.usage}`);
    }
    ctx.out(JSON.stringify(configJsonSchema(kind), null, 2) + '\n');
    return 0;
  },
};
