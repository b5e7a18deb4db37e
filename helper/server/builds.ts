/**
 * Image builds and images over JSON-RPC: `build/start` answers with the
 * build's id at once; progress goes out as `$/build/progress`, the outcome as
 * `$/build/finished`; `build/cancel` aborts (the build cleans up after
 * itself). The extension shows this as a cancellable progress notification
 * with the log in an output channel.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig } from '../config';
import { CoiError, ErrorCodes, toCoiError } from '../errors';
import type { IncusClient } from '../incus/client';
import { BuildRequest, defaultCacheDir, ImageBuild } from '../images/builder';
import { deleteImage, imageInfo, listImages } from '../images/images';
import { customRequest, readScript, requestFromConfig } from '../images/request';
import { spawnWatchdog } from '../images/watchdog';
import type { Log } from '../log';
import { BuildCancel, BuildFinished, BuildProgress, BuildStart, ImageDelete, ImageInfo, ImageList } from '../protocol/methods';
import type { NotificationDef, Router } from '../protocol/rpc';

export type Notifier = <P>(def: NotificationDef<P>, params: P) => void;

export interface BuildServerDeps {
  incus: IncusClient;
  env: NodeJS.ProcessEnv;
  log: Log;
  notify: Notifier;
  /** The bundle the watchdog runs from (dist/helper.js). */
  entry?: string;
}

export function registerBuildMethods(router: Router, d: BuildServerDeps): { running(): string[]; cancelAll(): void } {
  const builds = new Map<string, { build: ImageBuild; controller: AbortController }>();
  const home = d.env.HOME || os.homedir();
  const entry = d.entry ?? process.argv[1] ?? '';

  router
    .onRequest(BuildStart, async (p) => {
      let req: BuildRequest;
      if (p.kind === 'custom') {
        const script = p.script ? { text: await readScript(path.resolve(p.script)), file: path.resolve(p.script) } : undefined;
        if (!script && !p.commands?.length) throw new CoiError(ErrorCodes.INVALID_INPUT, 'a custom image needs a script or commands');
        req = customRequest(p.name, {
          ...(p.base ? { base: p.base } : {}),
          ...(script ? { script } : {}),
          commands: p.commands ?? [],
          force: p.force ?? false,
          ...(p.compression ? { compression: p.compression } : {}),
          ...(p.keep ? { keep: p.keep } : {}),
        });
      } else {
        const loaded = await loadConfig({ home, workspace: p.workspace, env: d.env, ...(p.profile ? { profile: p.profile } : {}) });
        req = await requestFromConfig(loaded, {
          force: p.force ?? false,
          ...(p.compression ? { compression: p.compression } : {}),
          ...(p.keep ? { keep: p.keep } : {}),
          ...(p.mode ? { mode: p.mode } : {}),
        });
      }
      const controller = new AbortController();
      const build = new ImageBuild(req, {
        incus: d.incus,
        env: d.env,
        home,
        cacheDir: defaultCacheDir(d.env),
        logsDir: path.join(home, '.coi', 'logs'),
        progress: (e) => d.notify(BuildProgress, e),
        ...(entry ? { watchdog: (id: string, work: string) => spawnWatchdog(entry, id, work, d.env) } : {}),
      });
      builds.set(build.id, { build, controller });
      // Answer first, then run: the client learns the id before the first progress note matters.
      setImmediate(() => {
        build.run(controller.signal).then(
          (result) => d.notify(BuildFinished, { buildId: build.id, ok: true, result }),
          (e: unknown) => {
            const err = toCoiError(e);
            d.log.info(`build ${build.id} ended: ${err.message}`);
            const details = err.details ?? {};
            d.notify(BuildFinished, {
              buildId: build.id,
              ok: false,
              error: {
                code: err.code,
                message: err.message,
                ...(typeof details.step === 'string' ? { step: details.step } : {}),
                ...(typeof details.log === 'string' ? { log: details.log } : {}),
              },
            });
          },
        ).finally(() => builds.delete(build.id));
      });
      return { buildId: build.id, log: build.logPath };
    })
    .onRequest(BuildCancel, ({ buildId }) => {
      const b = builds.get(buildId);
      if (!b) return { cancelled: false };
      b.controller.abort();
      return { cancelled: true };
    })
    .onRequest(ImageList, async ({ all }) => ({ images: await listImages(d.incus, { all }) }))
    .onRequest(ImageInfo, async ({ name }) => ({ image: await imageInfo(d.incus, name) }))
    .onRequest(ImageDelete, async ({ name }) => deleteImage(d.incus, name));

  return {
    running: () => [...builds.keys()],
    cancelAll: () => {
      for (const b of builds.values()) b.controller.abort();
    },
  };
}
