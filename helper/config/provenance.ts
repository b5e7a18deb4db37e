/** Where an effective configuration value came from. */

/** The layers, lowest first. The selected profile sits above the files and below the environment and flags. */
export const LAYERS = ['default', 'user', 'project', 'coi-config', 'profile', 'env', 'flag'] as const;
export type LayerKind = (typeof LAYERS)[number];

export interface Source {
  layer: LayerKind;
  file?: string;
  line?: number;
  column?: number;
  /** The environment variable, for the env layer. */
  env?: string;
  /** The profile that set it, for the profile layer (possibly an ancestor of the selected one). */
  profile?: string;
  builtin?: boolean;
}

export function describeSource(s: Source): string {
  const at = s.file ? `${s.file}${s.line !== undefined ? `:${s.line}:${s.column}` : ''}` : '';
  switch (s.layer) {
    case 'default':
      return 'default';
    case 'env':
      return `env ${s.env ?? ''}`.trim();
    case 'flag':
      return 'flag';
    case 'profile':
      return `profile ${s.profile ?? ''}${s.builtin ? ' (built-in)' : ''}${at ? ` ${at}` : ''}`;
    default:
      return `${s.layer}${at ? ` ${at}` : ''}`;
  }
}
