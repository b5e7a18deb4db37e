import { DEFAULT_SETUP, setupHost } from '../../setup/setup';
import { Command, parseFlags } from '../command';

export const setupCommand: Command = {
  name: 'setup',
  summary: 'Set up this machine: Incus, storage, network, guard and base image (as root; idempotent)',
  usage: 'coi setup [--dead-end-network] [--pool-size 30GiB] [--no-image] [--rebuild-image] [--no-guard] [--cache-dir /var/cache/coi]',
  async run(args, ctx) {
    const { values } = parseFlags(this, args, {
      'dead-end-network': { type: 'boolean' },
      'pool-size': { type: 'string' },
      'no-image': { type: 'boolean' },
      'rebuild-image': { type: 'boolean' },
      'no-guard': { type: 'boolean' },
      'cache-dir': { type: 'string' },
    });
    const started = Date.now();
    await setupHost(
      {
        deadEndNetwork: values['dead-end-network'] ?? false,
        poolSize: values['pool-size'] ?? DEFAULT_SETUP.poolSize,
        image: !(values['no-image'] ?? false),
        rebuildImage: values['rebuild-image'] ?? false,
        guard: !(values['no-guard'] ?? false),
        cacheDir: values['cache-dir'] ?? ctx.env.COI_CACHE_DIR ?? DEFAULT_SETUP.cacheDir,
      },
      { env: ctx.env, incus: ctx.incus(), report: (l) => ctx.out(`${l}\n`), progress: (l) => ctx.err(`  … ${l}\n`) },
    );
    ctx.out(`set-up complete in ${((Date.now() - started) / 1000).toFixed(1)} s (+ did, = already so)\n`);
    return 0;
  },
};
