/**
 * The agents COI can start. Each says which binary it needs and how it is
 * launched. (The agents feature extends each with resume, state directories,
 * credentials and permission modes.)
 */
import { CoiError, ErrorCodes } from '../errors';

export interface ToolDef {
  name: string;
  /** Executable that must exist in the image. */
  binary: string;
  /** argv to start it in the workspace. */
  argv: string[];
  description: string;
}

const TOOLS: ToolDef[] = [
  { name: 'claude', binary: 'claude', argv: ['claude'], description: 'Claude Code' },
  { name: 'opencode', binary: 'opencode', argv: ['opencode'], description: 'opencode' },
  { name: 'aider', binary: 'aider', argv: ['aider'], description: 'Aider' },
  { name: 'codex', binary: 'codex', argv: ['codex'], description: 'Codex CLI' },
  // A plain login shell: for debugging and for scripting the sandbox itself.
  { name: 'shell', binary: 'bash', argv: ['bash', '-l'], description: 'a bash shell' },
];

export function toolNames(): string[] {
  return TOOLS.map((t) => t.name);
}

export function getTool(name: string): ToolDef {
  const t = TOOLS.find((x) => x.name === name);
  if (!t) {
    throw new CoiError(ErrorCodes.INVALID_INPUT, `unknown tool "${name}"; known tools: ${toolNames().join(', ')}`);
  }
  return t;
}
