import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { ResponseError } from 'vscode-jsonrpc';
import { CoiError, ErrorCodes, formatErrorForTerminal, toCoiError } from '../../helper/errors';
import { fromResponseError, toResponseError } from '../../helper/protocol/rpc';

test('a CoiError survives the trip through a JSON-RPC ResponseError with code, message and remedy', () => {
  const original = new CoiError(ErrorCodes.INCUS_UNREACHABLE, 'Incus is not running', {
    remedy: { title: 'Set Up This Machine', shell: 'sudo coi setup', command: 'coi.setup' },
    details: { socket: '/x' },
  });
  const wire = JSON.parse(JSON.stringify(toResponseError(original).toJson()));
  assert.ok(wire.code >= 4000 && wire.code < 4100, `domain code in our range, got ${wire.code}`);
  const back = fromResponseError(new ResponseError(wire.code, wire.message, wire.data), 'x');
  assert.equal(back.code, ErrorCodes.INCUS_UNREACHABLE);
  assert.equal(back.message, 'Incus is not running');
  assert.deepEqual(back.remedy, { title: 'Set Up This Machine', shell: 'sudo coi setup', command: 'coi.setup' });
});

test('anything thrown becomes an INTERNAL CoiError, and CoiErrors keep their code', () => {
  assert.equal(toCoiError(new Error('boom')).code, ErrorCodes.INTERNAL);
  assert.equal(toCoiError('str').message, 'str');
  const e = new CoiError(ErrorCodes.NOT_FOUND, 'x');
  assert.equal(toCoiError(e), e);
});

test('the terminal form says what is wrong and how to fix it', () => {
  const text = formatErrorForTerminal(new CoiError(ErrorCodes.GUARD_UNREACHABLE, 'the COI guard is not running', { remedy: { title: 'Start the guard', shell: 'sudo coi guard start' } }));
  assert.equal(text, 'coi: the COI guard is not running\n  fix: Start the guard: sudo coi guard start');
});
