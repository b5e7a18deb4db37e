/**
 * From configuration and flags to a BuildRequest, the same way for the CLI
 * and the JSON-RPC server.
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { LoadedConfig } from '../config';
import { CoiError, ErrorCodes } from '../errors';
import { DEFAULT_KEEP, validImageName } from './aliases';
import type { BuildRequest, Compression } from './builder';
import type { BuildMode } from './recipe';

export const DEFAULT_IMAGE = 'coi';

export interface BuildFlags {
  force?: boolean;
  compression?: string;
  keep?: number;
  mode?: BuildMode;
}

export function compressionOf(value: string | undefined): Compression {
  if (value === undefined || value === '' || value === 'none') return 'none';
  if (value === 'gzip' || value === 'xz') return value;
  throw new CoiError(ErrorCodes.INVALID_INPUT, `--compression takes none, gzip or xz, not "${value}"`);
}

export function keepOf(value: number | undefined): number {
  if (value === undefined) return DEFAULT_KEEP;
  if (!Number.isInteger(value) || value < 1 || value > 100) throw new CoiError(ErrorCodes.INVALID_INPUT, `--keep takes a number from 1 to 100`);
  return value;
}

/**
 * `coi build` [--profile P]: the default image, unless the profile's
 * `[container.build]` has a script or commands, which make a custom image
 * named by the profile's `[container] image` from its `base` (the default
 * image `coi` unless the profile names another).
 */
export async function requestFromConfig(loaded: LoadedConfig, flags: BuildFlags): Promise<BuildRequest> {
  const c = loaded.config;
  const b = c.container.build;
  const common = {
    force: flags.force ?? false,
    compression: compressionOf(flags.compression ?? b.compression),
    keep: keepOf(flags.keep),
  };
  if (!b.script && b.commands.length === 0) {
    return { kind: 'default', name: DEFAULT_IMAGE, base: b.base, agents: [...b.agents], ...common, ...(flags.mode ? { mode: flags.mode } : {}) };
  }
  const name = c.container.image;
  if (name === DEFAULT_IMAGE) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `[container.build] script/commands make a custom image, but [container] image is "${DEFAULT_IMAGE}", the default image's name`, {
      remedy: { title: 'Name the custom image in the profile', shell: '[container]\nimage = "coi-myproject"' },
    });
  }
  if (!validImageName(name)) throw new CoiError(ErrorCodes.INVALID_INPUT, `"${name}" cannot be an image name`);
  const baseSource = loaded.provenance['container.build.base'];
  const base = baseSource && baseSource.layer !== 'default' ? b.base : DEFAULT_IMAGE;
  let script: { text: string; file: string } | undefined;
  if (b.script) {
    const from = loaded.provenance['container.build.script']?.file;
    const file = path.resolve(from ? path.dirname(from) : loaded.workspace, b.script);
    script = { text: await readScript(file), file };
  }
  return { kind: 'custom', name, base, commands: [...b.commands], ...(script ? { script } : {}), ...common };
}

export async function readScript(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CoiError(ErrorCodes.NOT_FOUND, `cannot read the build script ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function customRequest(name: string, opts: { base?: string; script?: { text: string; file?: string }; commands?: string[] } & BuildFlags): BuildRequest {
  if (!validImageName(name)) throw new CoiError(ErrorCodes.INVALID_INPUT, `"${name}" cannot be an image name: letters, digits, ".", "_" and "-", and not ending in a date stamp`);
  if (name === DEFAULT_IMAGE) throw new CoiError(ErrorCodes.INVALID_INPUT, `"${DEFAULT_IMAGE}" is the default image: build it with "coi build"`);
  return {
    kind: 'custom',
    name,
    base: opts.base ?? DEFAULT_IMAGE,
    commands: opts.commands ?? [],
    ...(opts.script ? { script: opts.script } : {}),
    force: opts.force ?? false,
    compression: compressionOf(opts.compression),
    keep: keepOf(opts.keep),
  };
}
