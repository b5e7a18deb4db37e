/**
 * The packaged extension: building it the way users get it (`npm run package`)
 * and reading what is inside. Shared by the e2e harness and the .vsix test.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The folder of our package.json, above wherever the bundled test file runs from. */
export function findRepoRoot(from: string): string {
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'coi-vscode') return dir;
    } catch {
      // not here
    }
    if (dirname(dir) === dir) throw new Error(`no coi-vscode package.json above ${from}`);
  }
}

export const repoRoot = findRepoRoot(__dirname);

/**
 * Builds dist/coi-vscode.vsix with `npm run package` (offline: esbuild and vsce
 * --no-dependencies) unless COI_E2E_VSIX names one; returns its path.
 */
export function packageVsix(env: NodeJS.ProcessEnv = process.env): string {
  if (env.COI_E2E_VSIX) {
    if (!existsSync(env.COI_E2E_VSIX)) throw new Error(`COI_E2E_VSIX=${env.COI_E2E_VSIX} does not exist`);
    return resolve(env.COI_E2E_VSIX);
  }
  const r = spawnSync('npm', ['run', '--silent', 'package'], { cwd: repoRoot, encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) throw new Error(`npm run package failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  const vsix = join(repoRoot, 'dist', 'coi-vscode.vsix');
  if (!existsSync(vsix)) throw new Error(`npm run package did not produce ${vsix}`);
  return vsix;
}

/** Entry names of a zip file (a .vsix), read from its central directory. */
export function listZip(path: string): string[] {
  const buf = readFileSync(path);
  // End of central directory: signature 0x06054b50, at most 64 KiB of comment after it.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${path} is not a zip file`);
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error(`${path}: bad central directory entry ${n}`);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    names.push(buf.subarray(p + 46, p + 46 + nameLen).toString('utf8'));
    p += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}
