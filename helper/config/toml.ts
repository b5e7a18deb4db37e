/**
 * TOML in, plain data and key positions out. smol-toml parses; it keeps no
 * positions, so a small scanner walks the (already valid) text once more and
 * records where each key was written. That is what lets a schema error say
 * "config.toml:12:3" and not only "network.mode".
 */
import { parse, TomlError } from 'smol-toml';
import { CoiError, ErrorCodes } from '../errors';

export type KeyPath = ReadonlyArray<string | number>;
export interface Position {
  line: number;
  column: number;
}
/** Formatted key path → where the key (or table header) was first written. */
export type KeyIndex = Map<string, Position>;

export interface ParsedToml {
  data: Record<string, unknown>;
  index: KeyIndex;
}

/** `network.mode`, `mounts[1].host`, `defaults.environment."A.B"` */
export function formatPath(path: KeyPath): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const s = /^[A-Za-z0-9_-]+$/.test(seg) ? seg : JSON.stringify(seg);
      out += out === '' ? s : `.${s}`;
    }
  }
  return out;
}

/** Parses TOML text; a syntax error becomes a CoiError naming file:line:column. */
export function parseToml(text: string, file: string): ParsedToml {
  let data: Record<string, unknown>;
  try {
    // smol-toml builds null-prototype objects; the clone makes them plain.
    data = structuredClone(parse(text, { unsafeKeyBehaviour: 'throw' })) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      const what = e.message.replace(/^Invalid TOML document: /, '').split('\n')[0] ?? e.message;
      throw new CoiError(ErrorCodes.INVALID_INPUT, `${file}:${e.line}:${e.column}: invalid TOML: ${what}`, {
        remedy: { title: `Fix the TOML syntax in ${file}` },
        details: { file, line: e.line, column: e.column, excerpt: e.codeblock },
      });
    }
    throw e;
  }
  return { data, index: buildKeyIndex(text) };
}

/** The position of the key at `path`, else of its nearest written ancestor. */
export function locate(index: KeyIndex, path: KeyPath): Position | undefined {
  for (let n = path.length; n > 0; n--) {
    const p = index.get(formatPath(path.slice(0, n)));
    if (p) return p;
  }
  return undefined;
}

/**
 * Scans valid TOML for key positions. It knows just enough of the grammar to
 * not be fooled: strings of all four kinds, comments, arrays and inline tables
 * (whose keys and elements it indexes too), [table] and [[array]] headers.
 */
export function buildKeyIndex(text: string): KeyIndex {
  const index: KeyIndex = new Map();
  let i = 0;
  let line = 1;
  let col = 1;
  /** Last element index of every array of tables seen, by its formatted path. */
  const arrayTables = new Map<string, number>();
  let table: Array<string | number> = [];

  const peek = (o = 0) => text[i + o];
  const advance = (n = 1) => {
    for (let k = 0; k < n && i < text.length; k++) {
      if (text[i] === '\n') {
        line++;
        col = 1;
      } else col++;
      i++;
    }
  };
  const here = (): Position => ({ line, column: col });
  const record = (path: KeyPath, pos: Position) => {
    const k = formatPath(path);
    if (!index.has(k)) index.set(k, pos);
  };
  const skipSpaces = () => {
    while (peek() === ' ' || peek() === '\t') advance();
  };
  const skipComment = () => {
    if (peek() === '#') while (i < text.length && peek() !== '\n') advance();
  };
  /** Whitespace, newlines and comments, as allowed inside arrays. */
  const skipAll = () => {
    for (;;) {
      const c = peek();
      if (c === ' ' || c === '\t' || c === '\r' || c === '\n') advance();
      else if (c === '#') skipComment();
      else return;
    }
  };
  const readString = (): string => {
    const q = peek()!;
    const triple = text.startsWith(q.repeat(3), i);
    advance(triple ? 3 : 1);
    let out = '';
    for (;;) {
      if (i >= text.length) return out;
      if (triple && text.startsWith(q.repeat(3), i)) {
        // A closing run may be up to five quotes: the last three close.
        let n = 3;
        while (peek(n) === q && n < 5) n++;
        out += q.repeat(n - 3);
        advance(n);
        return out;
      }
      const c = peek()!;
      if (!triple && c === q) {
        advance();
        return out;
      }
      if (q === '"' && c === '\\') {
        const e = peek(1);
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '"': '"', '\\': '\\', e: '\x1b' };
        if (e !== undefined && simple[e] !== undefined) {
          out += simple[e];
          advance(2);
        } else if (e === 'u' || e === 'U' || e === 'x') {
          const len = e === 'u' ? 4 : e === 'U' ? 8 : 2;
          out += String.fromCodePoint(parseInt(text.slice(i + 2, i + 2 + len), 16));
          advance(2 + len);
        } else {
          // Line-ending backslash in a multi-line string: skip to next non-space.
          advance();
          while (/[ \t\r\n]/.test(peek() ?? '')) advance();
        }
        continue;
      }
      out += c;
      advance();
    }
  };
  /** A dotted key; returns its segments and the position of each. */
  const readKey = (): Array<{ seg: string; pos: Position }> => {
    const segs: Array<{ seg: string; pos: Position }> = [];
    for (;;) {
      skipSpaces();
      const pos = here();
      const c = peek();
      let seg = '';
      if (c === '"' || c === "'") seg = readString();
      else while (i < text.length && /[A-Za-z0-9_-]/.test(peek()!)) {
        seg += peek();
        advance();
      }
      segs.push({ seg, pos });
      skipSpaces();
      if (peek() === '.') advance();
      else return segs;
    }
  };
  const readValue = (path: Array<string | number>) => {
    skipSpaces();
    const c = peek();
    if (c === '"' || c === "'") {
      readString();
    } else if (c === '[') {
      advance();
      let n = 0;
      for (;;) {
        skipAll();
        if (i >= text.length || peek() === ']') break;
        const start = i;
        record([...path, n], here());
        readValue([...path, n]);
        n++;
        skipAll();
        if (peek() === ',') advance();
        else if (i === start) advance(); // not TOML we understand: never spin
      }
      advance();
    } else if (c === '{') {
      advance();
      for (;;) {
        skipSpaces();
        if (i >= text.length || peek() === '}') break;
        const start = i;
        readKeyValue(path);
        skipSpaces();
        if (peek() === ',') advance();
        else if (i === start) advance();
      }
      advance();
    } else {
      while (i < text.length && !/[,\]}\n#]/.test(peek()!)) advance();
    }
  };
  const readKeyValue = (base: Array<string | number>) => {
    const segs = readKey();
    const path = [...base];
    for (const { seg, pos } of segs) {
      path.push(seg);
      record(path, pos);
    }
    skipSpaces();
    if (peek() === '=') advance();
    readValue(path);
  };
  /** Resolves header segments, stepping into the last element of each array of tables on the way. */
  const resolveHeader = (segs: string[], isArray: boolean): Array<string | number> => {
    const out: Array<string | number> = [];
    segs.forEach((seg, k) => {
      out.push(seg);
      const key = formatPath(out);
      const last = k === segs.length - 1;
      if (last && isArray) {
        const n = (arrayTables.get(key) ?? -1) + 1;
        arrayTables.set(key, n);
        out.push(n);
      } else if (arrayTables.has(key)) out.push(arrayTables.get(key)!);
    });
    return out;
  };

  while (i < text.length) {
    skipAll();
    if (i >= text.length) break;
    const start = i;
    if (peek() === '[') {
      const isArray = peek(1) === '[';
      const pos = here();
      advance(isArray ? 2 : 1);
      const segs = readKey();
      skipSpaces();
      advance(isArray ? 2 : 1);
      table = resolveHeader(
        segs.map((s) => s.seg),
        isArray,
      );
      // Every prefix of the header points at it unless written earlier.
      for (let n = 1; n <= table.length; n++) record(table.slice(0, n), pos);
    } else {
      readKeyValue(table);
    }
    skipSpaces();
    skipComment();
    if (i === start) advance();
  }
  return index;
}
