/**
 * Which sandbox a snapshot command acts on (reference §8): `-c NAME`, else
 * $COI_CONTAINER, else the only sandbox of the current workspace, else an
 * error that lists the choices. Pure, so every branch is unit-tested.
 */
import { CoiError, ErrorCodes } from '../errors';
import type { SandboxInfo } from '../sandbox/labels';

export interface ResolveInput {
  flag?: string | undefined;
  env?: string | undefined;
  /** The current workspace (real path), or undefined when the directory cannot be one (home, /). */
  workspace?: string | undefined;
  sandboxes: readonly SandboxInfo[];
}

export function resolveContainer(i: ResolveInput): { name: string; how: 'flag' | 'env' | 'workspace' } {
  if (i.flag) return { name: i.flag, how: 'flag' };
  if (i.env) return { name: i.env, how: 'env' };
  const here = i.workspace === undefined ? [] : i.sandboxes.filter((s) => s.workspace === i.workspace);
  if (here.length === 1) return { name: here[0]!.name, how: 'workspace' };
  const describe = (s: SandboxInfo) => `${s.name} (${s.state}, ${s.workspace})`;
  if (here.length > 1) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `this workspace has ${here.length} sandboxes: ${here.map(describe).join(', ')}; choose one with -c NAME`, {
      remedy: { title: 'Name the sandbox', shell: `coi snapshot list -c ${here[0]!.name}` },
      details: { choices: here.map((s) => s.name) },
    });
  }
  const where = i.workspace === undefined ? 'the current directory is not a workspace' : `no sandbox for ${i.workspace}`;
  throw new CoiError(
    ErrorCodes.INVALID_INPUT,
    i.sandboxes.length > 0
      ? `${where}; choose a sandbox with -c NAME (or COI_CONTAINER): ${i.sandboxes.map(describe).join(', ')}`
      : `${where}, and there are no sandboxes; start one with coi shell`,
    {
      ...(i.sandboxes.length > 0 ? { remedy: { title: 'Name the sandbox', shell: `coi snapshot list -c ${i.sandboxes[0]!.name}` } } : { remedy: { title: 'Start a sandbox', shell: 'coi shell' } }),
      details: { choices: i.sandboxes.map((s) => s.name) },
    },
  );
}
