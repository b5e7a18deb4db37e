/**
 * A value built on first use. For zod schemas above all: building them is a
 * good part of what loading a module costs (a few hundred objects for the
 * configuration), and a short command uses few of the ones it loads.
 */
export function once<T>(build: () => T): () => T {
  let built: { v: T } | undefined;
  return () => (built ??= { v: build() }).v;
}
