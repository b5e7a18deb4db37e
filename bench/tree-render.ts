/**
 * The Sandboxes tree's first render: from spawning the helper the way the
 * extension does to the tree's nodes built from its answers, through the
 * extension's own helper client and tree reducer. VS Code's drawing of the
 * nodes is not included.
 */
import { HelperProcess, helperSpawnArgs } from '../extension/helper/process';
import { initialState, reduce, treeOf, TreeNode } from '../extension/tree/model';
import { HelperInfo, SandboxList } from '../helper/protocol/methods';

const quiet = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };

export async function firstRender(helperJs: string, workspaces: string[], env: NodeJS.ProcessEnv): Promise<{ ms: number; nodes: number }> {
  const t = process.hrtime.bigint();
  const proc = new HelperProcess({ ...helperSpawnArgs(helperJs, process.execPath, { ...process.env, ...env }), log: quiet });
  try {
    const folders = workspaces.map((p) => ({ path: p, name: p.split('/').pop() ?? p }));
    let state = reduce(reduce(initialState(folders), { type: 'info-requested' }), { type: 'sandboxes-requested' });
    const [info, list] = await Promise.all([proc.request(HelperInfo, {}), proc.request(SandboxList, {})]);
    state = reduce(state, { type: 'info-received', info });
    state = reduce(state, { type: 'sandboxes-listed', sandboxes: list.sandboxes });
    const count = (ns: TreeNode[]): number => ns.reduce((n, x) => n + 1 + count(x.children ?? []), 0);
    const nodes = count(treeOf(state));
    return { ms: Number(process.hrtime.bigint() - t) / 1e6, nodes };
  } finally {
    await proc.dispose();
  }
}
