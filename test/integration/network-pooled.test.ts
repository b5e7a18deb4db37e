// The same acceptance tests against sandboxes taken from the warm pool: a taken member must be as
// isolated as a cold sandbox (issue 13). Set before the suite's module reads it.
process.env.COI_TEST_POOL = '1';
// eslint-disable-next-line @typescript-eslint/no-require-imports
require('./network.test');
