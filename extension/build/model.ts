/**
 * "Build Image": what the quick pick offers, the build/start params of each
 * choice, and how the helper's `$/build/progress` and `$/build/finished`
 * notifications become the progress notification's messages, the lines of
 * the "COI Build" output channel and the closing message. Pure (no vscode):
 * the unit tests drive it with the helper's own notification shapes.
 */
import type { z } from 'zod';
import type { BuildFinished, BuildProgress, BuildStart } from '../../helper/protocol/methods';
import type { PickList } from '../commands/args';

export type BuildStartParams = z.infer<typeof BuildStart.params>;
export type BuildProgressNote = z.infer<typeof BuildProgress.params>;
export type BuildFinishedNote = z.infer<typeof BuildFinished.params>;

/** What the user picked: the workspace's image (as `coi build` there), or a custom image from a script. */
export type BuildChoice = { kind: 'workspace'; force: boolean } | { kind: 'custom' };

export function buildPick(folderName: string): PickList<BuildChoice> {
  return {
    items: [
      {
        label: '$(package) Build',
        description: `what "coi build" builds in ${folderName}`,
        detail: 'The default agent image "coi", or the image of this workspace\'s [container.build]; a build whose recipe did not change is reused.',
        value: { kind: 'workspace', force: false },
      },
      { label: '$(refresh) Rebuild from Scratch', description: 'coi build --force', detail: 'Builds again even when an image of the same recipe exists.', value: { kind: 'workspace', force: true } },
      { label: '$(file-code) Custom Image from a Script…', description: 'coi build custom NAME --script FILE', detail: 'A derived image: your script runs as root on top of a base image.', value: { kind: 'custom' } },
    ],
    active: 0,
  };
}

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The custom image's name as typed: undefined when it is acceptable, else why not (the input box shows it). */
export function validateImageName(value: string): string | undefined {
  const v = value.trim();
  if (!v) return 'Type a name for the image';
  if (v.length > 64) return 'At most 64 characters';
  if (!IMAGE_NAME.test(v)) return 'Letters, digits, ".", "_" and "-", starting with a letter or digit';
  if (v === 'coi') return '"coi" is the default image: pick "Build" for it';
  return undefined;
}

export function workspaceBuildParams(workspace: string, force: boolean): BuildStartParams {
  return { kind: 'default', workspace, ...(force ? { force: true } : {}) };
}

export function customBuildParams(name: string, script: string, base: string | undefined): BuildStartParams {
  const b = base?.trim();
  return { kind: 'custom', name: name.trim(), script, ...(b ? { base: b } : {}) };
}

/** One line for the output channel: a step's title stands out, its log lines are indented under it. */
export function logLineOf(n: BuildProgressNote): string | undefined {
  if (n.title !== undefined) return `==> [${n.step}] ${n.title}`;
  if (n.line !== undefined) return `    ${n.line}`;
  return undefined;
}

const MESSAGE_MAX = 120;

function clip(s: string, max = MESSAGE_MAX): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/**
 * What the progress notification says: the current step's title, and the
 * step's latest log line after it, so a long step is seen to move.
 */
export class BuildProgressText {
  private title = 'starting';

  /** The message after this note. */
  accept(n: BuildProgressNote): string {
    if (n.title !== undefined) {
      this.title = `${n.step}: ${n.title}`;
      return clip(this.title);
    }
    return n.line !== undefined ? clip(`${this.title} — ${n.line}`) : clip(this.title);
  }
}

export interface BuildOutcome {
  severity: 'info' | 'warning' | 'error';
  message: string;
  /** The build's log file, when the helper named one. */
  logFile?: string;
}

const OUTCOME_WORDS = { built: 'built', 'from-cache': 'imported from the cache', 'up-to-date': 'already up to date' } as const;

/** The message that closes a build. A cancel is not an error: the helper removed what it had made. */
export function outcomeOf(f: BuildFinishedNote): BuildOutcome {
  if (f.ok && f.result) {
    const r = f.result;
    const size = `${(r.sizeBytes / 1024 / 1024).toFixed(0)} MiB`;
    const alias = r.versionAlias ? ` (${r.versionAlias})` : '';
    return { severity: 'info', message: `COI: image ${r.name} ${OUTCOME_WORDS[r.outcome]}: ${r.fingerprint.slice(0, 12)}${alias}, ${size}, ${r.seconds.toFixed(1)} s`, logFile: r.log };
  }
  const e = f.error ?? { code: 'INTERNAL', message: 'the build ended without saying why' };
  if (e.code === 'CANCELLED') {
    return { severity: 'warning', message: `COI: build cancelled${e.step ? ` during step "${e.step}"` : ''}; its temporary container was removed and no alias was moved.`, ...(e.log ? { logFile: e.log } : {}) };
  }
  // The helper's message already names the step and the log file.
  return { severity: 'error', message: `COI: ${e.message.split('\n')[0]}`, ...(e.log ? { logFile: e.log } : {}) };
}

/**
 * Follows one build among the notifications of all: the helper may send the
 * first notes before the client has read build/start's answer, so notes
 * without a known id wait, and are replayed (or dropped) once the id is known.
 */
export class BuildFollower {
  private id: string | undefined;
  private early: ({ kind: 'progress'; note: BuildProgressNote } | { kind: 'finished'; note: BuildFinishedNote })[] = [];
  private done = false;

  constructor(private readonly sink: { progress(n: BuildProgressNote): void; finished(n: BuildFinishedNote): void }) {}

  get buildId(): string | undefined {
    return this.id;
  }

  get finished(): boolean {
    return this.done;
  }

  started(buildId: string): void {
    this.id = buildId;
    const early = this.early;
    this.early = [];
    for (const e of early) {
      if (e.kind === 'progress') this.progress(e.note);
      else this.finish(e.note);
    }
  }

  progress(n: BuildProgressNote): void {
    if (this.done) return;
    if (this.id === undefined) this.early.push({ kind: 'progress', note: n });
    else if (n.buildId === this.id) this.sink.progress(n);
  }

  finish(n: BuildFinishedNote): void {
    if (this.done) return;
    if (this.id === undefined) this.early.push({ kind: 'finished', note: n });
    else if (n.buildId === this.id) {
      this.done = true;
      this.sink.finished(n);
    }
  }
}
