/**
 * Turns zod issues into messages a person can act on: where (file:line:column,
 * or the environment variable), which key, what was expected and what was
 * found, and for a misspelled key or value the likely intended one.
 */
import type { z } from 'zod';
import { CoiError, ErrorCodes } from '../errors';
import { allTables, knownKeys } from './schema';
import { formatPath, KeyIndex, KeyPath, locate, Position } from './toml';

export interface ConfigProblem {
  /** Formatted key path, e.g. `network.mode` or `mounts[0].host`. */
  key: string;
  message: string;
  suggestion?: string;
  line?: number;
  column?: number;
}

/** Where the checked data came from, for messages. */
export interface Origin {
  /** A file path, or a description such as "environment variable COI_TOOL". */
  label: string;
  /** Key positions when the data came from a TOML file. */
  index?: KeyIndex;
  /** Overrides the label per key (the environment layer names the variable). */
  labelFor?: (path: KeyPath) => string | undefined;
}

/** Optimal string alignment distance: Levenshtein plus adjacent transpositions ("netwrok"). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate within a distance that still reads as a typo, else undefined. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const limit = w.length <= 3 ? 1 : w.length <= 6 ? 2 : 3;
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(w, c.toLowerCase());
    if (dist < bestD) {
      best = c;
      bestD = dist;
    }
  }
  return bestD <= limit ? best : undefined;
}

function valueAt(data: unknown, path: KeyPath): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return v instanceof Date || v.constructor?.name === 'TomlDate' ? 'a date' : 'a table';
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'an array',
  object: 'a table',
  record: 'a table',
};

/** zod's own messages start like this; ours (given in the schema) do not. */
const ZOD_DEFAULT = /^(Invalid input|Invalid option|Invalid string|Too small|Too big|Invalid key|Invalid element|Unrecognized key)/;

type Issue = z.core.$ZodIssue;

/** One problem per issue (one per unknown key), with a suggestion where a typo is likely. */
export function problemsFromIssues(issues: readonly Issue[], data: unknown, schema: z.ZodType): Array<ConfigProblem & { path: KeyPath }> {
  const out: Array<ConfigProblem & { path: KeyPath }> = [];
  for (const issue of issues) {
    const path = issue.path as Array<string | number>;
    const key = formatPath(path);
    const got = describeValue(valueAt(data, path));
    switch (issue.code) {
      case 'unrecognized_keys': {
        const known = knownKeys(schema, path);
        for (const k of issue.keys) {
          const full = [...path, k];
          const where = path.length ? `in [${key}]` : 'at the top level';
          const p: ConfigProblem & { path: KeyPath } = { path: full, key: formatPath(full), message: `unknown key "${k}" ${where}` };
          const near = suggest(k, known);
          if (near) p.suggestion = path.length ? `${key}.${near}` : near;
          else {
            const home = allTables(schema).find((t) => t.keys.includes(k) && t.path.length > 0);
            if (home) p.suggestion = `${formatPath(home.path)}.${k}`;
          }
          out.push(p);
        }
        break;
      }
      case 'invalid_type': {
        const expected = EXPECTED[issue.expected] ?? issue.expected;
        out.push({ path, key, message: `${key}: expected ${expected}, got ${got}` });
        break;
      }
      case 'invalid_value': {
        const values = issue.values.map((v) => JSON.stringify(v));
        const p: ConfigProblem & { path: KeyPath } = { path, key, message: `${key}: expected ${values.length === 1 ? values[0] : `one of ${values.join(', ')}`}, got ${got}` };
        const actual = valueAt(data, path);
        if (typeof actual === 'string') {
          const near = suggest(actual, issue.values.filter((v): v is string => typeof v === 'string'));
          if (near !== undefined) p.suggestion = near;
        }
        out.push(p);
        break;
      }
      case 'too_small':
      case 'too_big': {
        if (!ZOD_DEFAULT.test(issue.message)) {
          out.push({ path, key, message: `${key}: ${issue.message}, got ${got}` });
          break;
        }
        const small = issue.code === 'too_small';
        const bound = small ? issue.minimum : issue.maximum;
        const inclusive = issue.inclusive !== false;
        let expected: string;
        if (issue.origin === 'array') expected = small ? `at least ${bound} item(s)` : `at most ${bound} item(s)`;
        else if (issue.origin === 'string') expected = small ? `at least ${bound} character(s)` : `at most ${bound} character(s)`;
        else expected = `a number ${small ? (inclusive ? '≥' : '>') : inclusive ? '≤' : '<'} ${String(bound)}`;
        out.push({ path, key, message: `${key}: expected ${expected}, got ${got}` });
        break;
      }
      case 'invalid_key': {
        const inner = issue.issues[0]?.message ?? 'invalid name';
        out.push({ path, key, message: `${key}: invalid name "${String(path[path.length - 1])}": ${inner}` });
        break;
      }
      default: {
        const message = ZOD_DEFAULT.test(issue.message) ? issue.message.replace(/^Invalid input: /, '') : issue.message;
        out.push({ path, key, message: `${key}: ${message}, got ${got}` });
      }
    }
  }
  return out;
}

/** "file:line:col: message; did you mean "x"?" */
export function formatProblem(p: ConfigProblem, label: string): string {
  const at = p.line !== undefined ? `${label}:${p.line}:${p.column}` : label;
  const hint = p.suggestion !== undefined ? `; did you mean "${p.suggestion}"?` : '';
  return `${at}: ${p.message}${hint}`;
}

/**
 * Validates one layer's data against the schema. All problems of the layer
 * are reported together, so the user fixes a file in one pass; any problem
 * rejects the whole layer.
 */
export function validateLayer<S extends z.ZodType>(schema: S, data: unknown, origin: Origin): z.output<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const problems = problemsFromIssues(r.error.issues, data, schema);
  throw configError(
    problems.map((p) => {
      const pos: Position | undefined = origin.index ? locate(origin.index, p.path) : undefined;
      return { ...p, ...(pos ? pos : {}), label: origin.labelFor?.(p.path) ?? origin.label };
    }),
    origin.label,
  );
}

export function configError(problems: Array<ConfigProblem & { label: string }>, source: string): CoiError {
  const lines = problems.map((p) => formatProblem(p, p.label));
  const message = lines.length === 1 ? lines[0]! : `${lines.length} problems in ${source}:\n  ${lines.join('\n  ')}`;
  return new CoiError(ErrorCodes.INVALID_INPUT, message, {
    remedy: { title: `Fix ${source}` },
    details: { source, problems: problems.map(({ label, ...p }) => ({ file: label, ...p })) },
  });
}
