/** A temporary HOME and workspace for configuration tests, removed by `dispose()`. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadConfig, LoadOptions, realpathLoose } from '../../../helper/config/loader';
import type { LoadedConfig } from '../../../helper/config/resolve';

export interface World {
  root: string;
  home: string;
  workspace: string;
  /** Writes a file under the root ("home/.coi/config.toml", "ws/.coi/config.toml"). */
  write(rel: string, text: string): string;
  opts(extra?: Partial<LoadOptions>): LoadOptions;
  load(extra?: Partial<LoadOptions>): Promise<LoadedConfig>;
  dispose(): void;
}

export function makeWorld(): World {
  const root = realpathLoose(mkdtempSync(join(tmpdir(), 'coi-config-')));
  const home = join(root, 'home');
  const workspace = join(root, 'ws');
  mkdirSync(home, { recursive: true });
  mkdirSync(workspace, { recursive: true });
  const w: World = {
    root,
    home,
    workspace,
    write(rel, text) {
      const p = join(root, rel);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, text);
      return p;
    },
    opts: (extra = {}) => ({ home, workspace, env: {}, ...extra }),
    load: (extra = {}) => loadConfig(w.opts(extra)),
    dispose: () => rmSync(root, { recursive: true, force: true }),
  };
  return w;
}

/** Runs fn with a fresh world and always cleans up. */
export async function withWorld<T>(fn: (w: World) => Promise<T>): Promise<T> {
  const w = makeWorld();
  try {
    return await fn(w);
  } finally {
    w.dispose();
  }
}
