import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { CoiError, ErrorCodes } from '../../../../helper/errors';
import { applyRuleset, checkRuleset, ExecResult, listInstalledRules, NftExec, nftExec, removeAllRules } from '../../../../helper/guard/network/nft';
import { renderRemoveAll } from '../../../../helper/guard/network/render';

function fake(result: Partial<ExecResult>, calls: Array<{ args: readonly string[]; input?: string }> = []): NftExec {
  return async (args, input) => {
    calls.push({ args, ...(input === undefined ? {} : { input }) });
    return { code: 0, signal: null, stdout: '', stderr: '', ...result };
  };
}

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<CoiError> {
  let caught: unknown;
  await p.catch((e: unknown) => (caught = e));
  assert.ok(caught instanceof CoiError, `a CoiError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.match(caught.message, re);
  return caught;
}

test('apply feeds the script to one `nft -f -`; check uses `nft -c -f -`; remove applies the deletions', async () => {
  const calls: Array<{ args: readonly string[]; input?: string }> = [];
  const nft = fake({}, calls);
  await applyRuleset('table inet coi_guard\n', nft);
  await checkRuleset('table inet coi_guard\n', nft);
  await removeAllRules(nft);
  assert.deepEqual(calls, [
    { args: ['-f', '-'], input: 'table inet coi_guard\n' },
    { args: ['-c', '-f', '-'], input: 'table inet coi_guard\n' },
    { args: ['-f', '-'], input: renderRemoveAll() },
  ]);
});

test("nft's own error message reaches the user, with the exit code in the details", async () => {
  const stderr = '/dev/stdin:6:30-30: Error: syntax error, unexpected string\n  chain x { comment "a"b" }\n                             ^\n';
  const e = await rejectsWith(applyRuleset('bad', fake({ code: 1, stderr })), ErrorCodes.COMMAND_FAILED, /cannot apply the network rules: \/dev\/stdin:6:30-30: Error: syntax error/);
  assert.equal(e.details?.exitCode, 1);
  await rejectsWith(checkRuleset('bad', fake({ code: 1, stderr })), ErrorCodes.COMMAND_FAILED, /cannot validate the network rules/);
});

test('no privilege, a hung nft and a missing nft are told apart', async () => {
  await rejectsWith(applyRuleset('x', fake({ code: 1, stderr: 'Error: Could not process rule: Operation not permitted\n' })), ErrorCodes.NOT_PERMITTED, /needs root/);
  await rejectsWith(applyRuleset('x', fake({ code: null, signal: 'SIGKILL' })), ErrorCodes.TIMEOUT, /did not finish/);
  const e = await rejectsWith(applyRuleset('x', nftExec({ binary: 'coi-no-such-nft-binary' })), ErrorCodes.COMMAND_FAILED, /not installed/);
  assert.equal(e.remedy?.title, 'Install nftables');
});

test('listing parses nft -j output into installed sandboxes', async () => {
  const calls: Array<{ args: readonly string[]; input?: string }> = [];
  const stdout = JSON.stringify({ nftables: [{ table: { family: 'netdev', name: 'coi_guard_ingress', handle: 1 } }, { chain: { family: 'netdev', table: 'coi_guard_ingress', name: 'in_web', handle: 2 } }] });
  const r = await listInstalledRules(fake({ stdout }, calls));
  assert.deepEqual(calls[0]?.args, ['-j', 'list', 'ruleset']);
  assert.deepEqual(r.sandboxes.map((s) => s.key), ['web']);
});
