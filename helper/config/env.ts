/**
 * The COI_* environment variables that set configuration keys. Deliberately
 * few and explicit (the Go tool had many and dropped them, §2.1): these are the
 * ones a script or CI job plausibly wants without writing a file. Values are
 * validated like file values and errors name the variable.
 */
import { CoiError, ErrorCodes } from '../errors';
import { formatPath, KeyPath } from './toml';

export interface EnvKey {
  env: string;
  path: readonly string[];
  type: 'string' | 'boolean';
  doc: string;
}

export const ENV_KEYS: readonly EnvKey[] = [
  { env: 'COI_IMAGE', path: ['container', 'image'], type: 'string', doc: 'image alias sandboxes start from' },
  { env: 'COI_PERSISTENT', path: ['container', 'persistent'], type: 'boolean', doc: 'keep containers after the session (1/0, true/false)' },
  { env: 'COI_TOOL', path: ['tool', 'name'], type: 'string', doc: 'the agent: claude, opencode, aider, codex, pi, omp, custom' },
  { env: 'COI_NETWORK_MODE', path: ['network', 'mode'], type: 'string', doc: 'restricted, allowlist or open' },
  { env: 'COI_PROFILE', path: ['defaults', 'profile'], type: 'string', doc: 'profile used when --profile is not given' },
  { env: 'COI_INCUS_PROJECT', path: ['incus', 'project'], type: 'string', doc: 'Incus project' },
  { env: 'COI_MAX_DURATION', path: ['limits', 'runtime', 'max_duration'], type: 'string', doc: 'stop sandboxes after this long, e.g. "4h"' },
];

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/** The patch the environment sets (unset or empty variables set nothing). */
export function envPatch(env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const k of ENV_KEYS) {
    const raw = env[k.env];
    if (raw === undefined || raw === '') continue;
    let value: unknown = raw;
    if (k.type === 'boolean') {
      const v = raw.trim().toLowerCase();
      if (TRUE.has(v)) value = true;
      else if (FALSE.has(v)) value = false;
      else throw new CoiError(ErrorCodes.INVALID_INPUT, `environment variable ${k.env}: expected 1 or 0 (true or false), got ${JSON.stringify(raw)}`, { remedy: { title: `Fix or unset ${k.env}` } });
    }
    let t = patch;
    k.path.slice(0, -1).forEach((seg) => {
      t = (t[seg] ??= {}) as Record<string, unknown>;
    });
    t[k.path[k.path.length - 1]!] = value;
  }
  return patch;
}

/** The variable that set a key path (or a path inside it), for messages and provenance. */
export function envVarFor(path: KeyPath): string | undefined {
  const key = formatPath(path);
  return ENV_KEYS.find((k) => key === formatPath(k.path) || key.startsWith(`${formatPath(k.path)}.`))?.env;
}
