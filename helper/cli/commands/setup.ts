import { CoiError, ErrorCodes } from '../../errors';
import type { Command } from '../command';

export const setupCommand: Command = {
  name: 'setup',
  summary: 'Set up this machine: Incus, storage, network, guard and base image',
  usage: 'coi setup',
  async run() {
    throw new CoiError(ErrorCodes.INTERNAL, 'not yet');
  },
};
