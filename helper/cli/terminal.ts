/** Attaching this process's terminal to a sandbox's tmux session. */
import { SandboxManager } from '../sandbox/manager';
import type { CliContext } from './command';

export async function attachTerminal(mgr: SandboxManager, name: string, ctx: CliContext): Promise<number> {
  const stdin = process.stdin;
  const wasRaw = stdin.isTTY ? stdin.isRaw : false;
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.resume();
  let endedBy: 'deleted' | 'stopped' | undefined;
  try {
    const session = await mgr.attach(name, {
      input: stdin,
      output: process.stdout,
      width: process.stdout.columns || 120,
      height: process.stdout.rows || 40,
    });
    const onResize = () => session.resize(process.stdout.columns || 120, process.stdout.rows || 40);
    process.stdout.on('resize', onResize);
    await session.done;
    process.stdout.off('resize', onResize);
    endedBy = session.endedBy();
  } finally {
    if (stdin.isTTY) stdin.setRawMode(wasRaw);
    stdin.pause();
  }
  if (endedBy) {
    // The terminal still shows tmux's last screen: start the message on a clean line.
    ctx.err(`\r\n\x1b[0mcoi: ${name} was ${endedBy === 'deleted' ? 'deleted' : 'stopped'} while attached; the session is gone (workspace files are kept)\n`);
    return 1;
  }
  const after = await mgr.get(name).catch(() => undefined);
  if (!after) ctx.err(`coi: ${name} ended and was removed; workspace files are kept\n`);
  else if (after.state === 'running') ctx.err(`coi: detached; ${name} keeps running (coi attach ${name})\n`);
  return 0;
}
