import { CoiError, ErrorCodes } from '../../errors';
import { deleteImage, imageInfo, ImageSummary, listImages } from '../../images/images';
import { Command, formatOption, parseFlags } from '../command';

const usage = 'coi image list [--all] [--format json]  |  coi image info NAME [--format json]  |  coi image delete NAME…';

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(0)} MiB`;
}

export const imageCommand: Command = {
  name: 'image',
  summary: 'List, inspect and delete images (what a build recorded: tools and versions)',
  usage,
  async run(args, ctx) {
    const [action, ...rest] = args;
    const { values, positionals } = parseFlags(this, rest, { all: { type: 'boolean', short: 'a' }, format: { type: 'string' } }, true);
    const format = formatOption(this, values.format);
    const incus = ctx.incus();
    switch (action) {
      case 'list': {
        const images = await listImages(incus, { all: values.all === true });
        if (format === 'json') {
          ctx.out(JSON.stringify({ images }, null, 2) + '\n');
          return 0;
        }
        if (images.length === 0) ctx.out('no images; build one with: sudo coi build\n');
        for (const i of images) {
          const tools = ['claude', 'opencode', 'node'].filter((t) => i.tools[t]).map((t) => `${t} ${i.tools[t]}`).join(', ');
          ctx.out(`${i.fingerprint.slice(0, 12)}  ${(i.aliases.join(',') || '-').padEnd(28)}  ${i.kind.padEnd(7)}  ${mib(i.sizeBytes).padStart(9)}  ${i.createdAt.slice(0, 19).replace('T', ' ')}${tools ? `  ${tools}` : ''}\n`);
        }
        return 0;
      }
      case 'info': {
        if (positionals.length !== 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
        const i = await imageInfo(incus, positionals[0]!);
        if (format === 'json') ctx.out(JSON.stringify(i, null, 2) + '\n');
        else ctx.out(describe(i));
        return 0;
      }
      case 'delete': {
        if (positionals.length === 0) throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
        let failed = 0;
        for (const name of positionals) {
          try {
            const r = await deleteImage(incus, name);
            ctx.out(`${name}: deleted${r.aliases.length ? ` alias(es) ${r.aliases.join(', ')}` : ''}${r.images.length ? `${r.aliases.length ? ' and' : ''} image(s) ${r.images.map((f) => f.slice(0, 12)).join(', ')}` : ''}\n`);
          } catch (e) {
            failed++;
            ctx.err(`coi: ${name}: ${(e as Error).message}\n`);
          }
        }
        return failed ? 1 : 0;
      }
      default:
        throw new CoiError(ErrorCodes.INVALID_INPUT, `usage: ${usage}`);
    }
  },
};

function describe(i: ImageSummary): string {
  const p = i.properties;
  const lines = [
    `fingerprint: ${i.fingerprint}`,
    `aliases:     ${i.aliases.join(', ') || '-'}`,
    `kind:        ${i.kind}`,
    `description: ${i.description}`,
    `size:        ${mib(i.sizeBytes)}`,
    `created:     ${i.createdAt}`,
  ];
  if (p['coi.built-at']) lines.push(`built:       ${p['coi.built-at']} (build ${p['coi.build-id'] ?? '?'})`);
  if (p['coi.base']) lines.push(`base:        ${p['coi.base']}`);
  if (p['coi.recipe']) lines.push(`recipe:      ${p['coi.recipe']}`);
  const agents = Object.entries(p).filter(([k]) => k.startsWith('coi.agents.'));
  if (agents.length) lines.push(`agents:      ${agents.map(([, v]) => v).join(', ')}`);
  if (Object.keys(i.tools).length) {
    lines.push('tools:');
    for (const [t, v] of Object.entries(i.tools).sort()) lines.push(`  ${t.padEnd(10)} ${v}`);
  }
  return lines.join('\n') + '\n';
}
