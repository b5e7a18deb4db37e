/**
 * `coi image list|info|delete`: the images, read from Incus each time, with
 * what our builds recorded about them (image properties `coi.*`).
 */
import { CoiError, ErrorCodes } from '../errors';
import type { IncusClient } from '../incus/client';
import type { ImageInfo } from '../incus/types';
import { isVersionOf } from './aliases';

export interface ImageSummary {
  fingerprint: string;
  aliases: string[];
  description: string;
  sizeBytes: number;
  createdAt: string;
  /** default (the agent image), custom, base (coi-base) or other. */
  kind: string;
  /** Tool name → version, from the build's probe. */
  tools: Record<string, string>;
  properties: Record<string, string>;
}

export function summarize(i: ImageInfo): ImageSummary {
  const props = i.properties ?? {};
  const tools: Record<string, string> = {};
  for (const [k, v] of Object.entries(props)) if (k.startsWith('coi.tools.')) tools[k.slice('coi.tools.'.length)] = v;
  const kind = props['coi.kind'] ?? (props.variant === 'coi-base' ? 'base' : 'other');
  return {
    fingerprint: i.fingerprint,
    aliases: (i.aliases ?? []).map((a) => a.name).sort(),
    description: props.description ?? '',
    sizeBytes: i.size,
    createdAt: i.created_at,
    kind,
    tools,
    properties: props,
  };
}

/** COI's images (built by coi or set-up) or, with all, every image. Newest first. */
export async function listImages(incus: IncusClient, opts: { all?: boolean } = {}): Promise<ImageSummary[]> {
  const images = (await incus.listImages()).map(summarize);
  return images
    .filter((i) => opts.all || i.kind !== 'other' || i.aliases.some((a) => a === 'coi' || a.startsWith('coi-')))
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

/** An image by alias, full fingerprint or unique fingerprint prefix. */
export async function findImage(incus: IncusClient, ref: string): Promise<ImageInfo> {
  const byAlias = await incus.imageAlias(ref);
  if (byAlias) return incus.getImage(byAlias);
  if (/^[0-9a-f]{6,64}$/.test(ref)) {
    const matches = (await incus.listImages()).filter((i) => i.fingerprint.startsWith(ref));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new CoiError(ErrorCodes.INVALID_INPUT, `${ref} matches ${matches.length} images; give more of the fingerprint`);
  }
  throw new CoiError(ErrorCodes.NOT_FOUND, `no image ${ref}`, { remedy: { title: 'List the images', shell: 'coi image list' } });
}

export async function imageInfo(incus: IncusClient, ref: string): Promise<ImageSummary> {
  return summarize(await findImage(incus, ref));
}

/**
 * Deletes an alias; the image goes too once no alias points at it. Deleting a
 * main alias (`coi`, a custom name) also deletes its versions (`coi-2026…`),
 * so the images go with them.
 */
export async function deleteImage(incus: IncusClient, ref: string): Promise<{ aliases: string[]; images: string[] }> {
  const aliases = await incus.listImageAliases();
  const main = aliases.find((a) => a.name === ref);
  let doomed: string[];
  if (main) doomed = [main.name, ...aliases.filter((a) => isVersionOf(ref, a.name)).map((a) => a.name)];
  else {
    const img = await findImage(incus, ref);
    doomed = (img.aliases ?? []).map((a) => a.name);
    if (doomed.length === 0) {
      await incus.deleteImage(img.fingerprint);
      return { aliases: [], images: [img.fingerprint] };
    }
  }
  const targets = new Set(aliases.filter((a) => doomed.includes(a.name)).map((a) => a.target));
  for (const a of doomed) await incus.deleteImageAlias(a);
  const left = new Set((await incus.listImageAliases()).map((a) => a.target));
  const images: string[] = [];
  for (const fp of targets) {
    if (left.has(fp)) continue;
    await incus.deleteImage(fp);
    images.push(fp);
  }
  return { aliases: doomed, images };
}
