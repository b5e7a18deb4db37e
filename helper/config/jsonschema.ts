/**
 * JSON Schema of the configuration files, generated from the zod schema so
 * the editor's completion and validation can never disagree with the loader
 * about which keys exist. Draft 7: what the TOML language servers read
 * (Even Better TOML / taplo, Tombi). Value rules written as refinements
 * (durations, sizes) are checked by the loader only.
 */
import { z } from 'zod';
import { configSchema, profileSchema } from './schema';

export type SchemaKind = 'config' | 'profile';

export function configJsonSchema(kind: SchemaKind = 'config'): Record<string, unknown> {
  const schema = z.toJSONSchema(kind === 'config' ? configSchema() : profileSchema(), { target: 'draft-7', io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return {
    $schema,
    $id: `https://coi.invalid/schemas/coi-${kind}.schema.json`,
    title: kind === 'config' ? 'COI configuration (.coi/config.toml, ~/.coi/config.toml)' : 'COI profile (.coi/profiles/<name>/config.toml)',
    ...rest,
  };
}
