/**
 * Domain errors: values with a stable code, a message a person understands and,
 * where one exists, a remedy the UI can offer as a button or the CLI can print.
 *
 * They cross JSON-RPC as ResponseError with a numeric code from our own range
 * (see protocol/errors.ts) and `data` = CoiErrorData, so the extension can rebuild
 * the same value on its side.
 */

export const ErrorCodes = {
  /** Incus socket missing or refusing connections. */
  INCUS_UNREACHABLE: 'INCUS_UNREACHABLE',
  /** The socket exists but we may not open it (not in the Incus admin group). */
  INCUS_PERMISSION: 'INCUS_PERMISSION',
  /** Incus answered with an error (its message is kept). */
  INCUS_API: 'INCUS_API',
  /** An Incus operation or a wait of ours ran out of time. */
  TIMEOUT: 'TIMEOUT',
  /** The caller cancelled. */
  CANCELLED: 'CANCELLED',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'ALREADY_EXISTS',
  /** Bad user input: flags, names, paths, config values. */
  INVALID_INPUT: 'INVALID_INPUT',
  /** The guard is not running or its socket refuses us. */
  GUARD_UNREACHABLE: 'GUARD_UNREACHABLE',
  /** A privileged operation was asked of a process without the privilege. */
  NOT_PERMITTED: 'NOT_PERMITTED',
  /** Host set-up could not complete a step. */
  SETUP_FAILED: 'SETUP_FAILED',
  /** A program we run (nft, apt-get, debootstrap…) failed. */
  COMMAND_FAILED: 'COMMAND_FAILED',
  /** Something we did not anticipate; always a bug worth reporting. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** A fix the user can apply: shown as a button in VS Code, as a hint on the CLI. */
export interface Remedy {
  /** Short label, e.g. "Set Up This Machine". */
  title: string;
  /** A shell command line that fixes it, for the CLI and the terminal. */
  shell?: string;
  /** A VS Code command id the extension can run. */
  command?: string;
}

export interface CoiErrorData {
  code: ErrorCode;
  message: string;
  remedy?: Remedy;
  /** Facts for logs and bug reports; never needed to understand the message. */
  details?: Record<string, unknown>;
}

export class CoiError extends Error {
  readonly code: ErrorCode;
  readonly remedy?: Remedy;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: { remedy?: Remedy; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CoiError';
    this.code = code;
    if (opts.remedy) this.remedy = opts.remedy;
    if (opts.details) this.details = opts.details;
  }

  toData(): CoiErrorData {
    const data: CoiErrorData = { code: this.code, message: this.message };
    if (this.remedy) data.remedy = this.remedy;
    if (this.details) data.details = this.details;
    return data;
  }

  static fromData(data: CoiErrorData): CoiError {
    return new CoiError(data.code, data.message, {
      ...(data.remedy ? { remedy: data.remedy } : {}),
      ...(data.details ? { details: data.details } : {}),
    });
  }
}

export function isCoiError(e: unknown): e is CoiError {
  return e instanceof CoiError;
}

/** Wraps anything thrown into a CoiError without losing an existing code. */
export function toCoiError(e: unknown): CoiError {
  if (e instanceof CoiError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new CoiError(ErrorCodes.INTERNAL, message, { cause: e });
}

/** The one line a person reads on a terminal: message, then the fix. */
export function formatErrorForTerminal(e: CoiError): string {
  let out = `coi: ${e.message}`;
  if (e.remedy) {
    out += `\n  fix: ${e.remedy.title}`;
    if (e.remedy.shell) out += `: ${e.remedy.shell}`;
  }
  return out;
}
