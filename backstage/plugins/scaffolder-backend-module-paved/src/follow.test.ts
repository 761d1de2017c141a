// Following a request, against a scripted paved (a fake of its REST API: the real one is in
// tests/it/backstage_modules.rs, end to end through Backstage's scaffolder).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PavedCall, PavedError } from './client';
import { follow } from './follow';

/** Each read of the request answers the next state; logs grow with it. */
function scripted(states: { request: any; logs: any[]; approvals?: any[] }[]) {
  let i = -1;
  const calls: string[] = [];
  const call: PavedCall = async (method, path) => {
    calls.push(`${method} ${path.split('?')[0]}`);
    if (method === 'POST') return {};
    if (path.includes('/logs')) return { items: states[i].logs };
    if (path.includes('/approvals')) return { items: states[i].approvals ?? [] };
    i = Math.min(i + 1, states.length - 1);
    return states[i].request;
  };
  return { call, calls };
}

function recorder() {
  const lines: string[] = [];
  return {
    lines,
    logger: {
      info: (m: string) => lines.push(`info ${m}`),
      warn: (m: string) => lines.push(`warn ${m}`),
      error: (m: string) => lines.push(`error ${m}`),
    },
  };
}

const steps = (...s: [string, string, string?][]) =>
  s.map(([name, status, error]) => ({ name, status, error: error ?? null }));
const log = (step: string, message: string, level = 'info') => ({ step, message, level });
const noSleep = async () => {};

test("every step and log line paved records reaches the task log once, in order", async () => {
  const paved = scripted([
    { request: { status: 'running', steps: steps(['validate', 'succeeded'], ['apply', 'running'], ['publish', 'pending']) },
      logs: [log('validate', 'values valid')] },
    { request: { status: 'succeeded', resourceId: 'r1', steps: steps(['validate', 'succeeded'], ['apply', 'succeeded'], ['publish', 'succeeded']) },
      logs: [log('validate', 'values valid'), log('apply', 'cache applied')] },
  ]);
  const r = recorder();
  const done = await follow({ call: paved.call, requestId: 'q1', requestUrl: 'http://paved/q1', logger: r.logger, pollMs: 0, sleep: noSleep });
  assert.equal(done.request.resourceId, 'r1');
  assert.deepEqual(r.lines, [
    'info [validate] values valid',
    'info Step 1 of 3, validate: succeeded',
    'info Step 2 of 3, apply: running',
    'info [apply] cache applied',
    'info Step 2 of 3, apply: succeeded',
    'info Step 3 of 3, publish: succeeded',
  ]);
});

test('a failed request names its failing step, its position, its error and the link', async () => {
  const paved = scripted([
    { request: { status: 'failed', error: 'step apply failed', steps: steps(['validate', 'succeeded'], ['apply', 'failed', 'a database named x_dev already exists'], ['publish', 'pending']) },
      logs: [] },
  ]);
  const r = recorder();
  await assert.rejects(
    follow({ call: paved.call, requestId: 'q2', requestUrl: 'http://paved/q2', logger: r.logger, pollMs: 0, sleep: noSleep }),
    { message: 'paved request q2 failed at step 2 of 3 (apply): a database named x_dev already exists. http://paved/q2' },
  );
  assert.ok(r.lines.includes('error Step 2 of 3, apply: failed (a database named x_dev already exists)'), r.lines.join('\n'));
});

test("paved's own failure message, which names its step and logs, is passed on as it is", async () => {
  const error = 'failed at step 2 of 3: apply: PostgreSQL (dev) at 10.0.0.5:5432: a database named x_dev already exists. Logs: http://paved/q3/logs';
  const paved = scripted([
    { request: { status: 'failed', error, steps: steps(['validate', 'succeeded'], ['apply', 'failed', error], ['publish', 'pending']) },
      logs: [] },
  ]);
  const r = recorder();
  await assert.rejects(
    follow({ call: paved.call, requestId: 'q3', requestUrl: 'http://paved/q3', logger: r.logger, pollMs: 0, sleep: noSleep }),
    { message: `paved request q3 ${error}` },
  );
});

test("Backstage's cancel cancels the paved request", async () => {
  const paved = scripted([{ request: { status: 'running', steps: [] }, logs: [] }]);
  const abort = new AbortController();
  const r = recorder();
  const following = follow({
    call: paved.call, requestId: 'q3', requestUrl: 'u', logger: r.logger, pollMs: 0, signal: abort.signal,
    sleep: async () => abort.abort(),
  });
  await assert.rejects(following, /Cancelled/);
  assert.ok(paved.calls.includes('POST /v1/requests/q3/cancel'), paved.calls.join('\n'));
});

test('an expired user token ends the wait with a clear message, the request going on', async () => {
  const call: PavedCall = async () => {
    throw new PavedError(401, 'token expired');
  };
  await assert.rejects(
    follow({ call, requestId: 'q4', requestUrl: 'http://paved/q4', logger: recorder().logger, pollMs: 0, sleep: noSleep }),
    /user token is no longer accepted \(token expired\)\. The request goes on in paved: http:\/\/paved\/q4/,
  );
});

test('a wait for approval says who may decide and why, once', async () => {
  const approvals = [
    { status: 'pending', requiredRole: 'platform-admin', reason: 'team budget exceeded; only a platform-admin may approve it (a team lead cannot)' },
    { status: 'approved', requiredRole: 'lead', reason: 'above 1000 USD/month' },
  ];
  const waiting = { request: { status: 'awaiting_approval', steps: [] }, logs: [], approvals };
  const paved = scripted([
    waiting,
    waiting,
    { request: { status: 'succeeded', resourceId: 'r9', steps: steps(['validate', 'succeeded']) }, logs: [] },
  ]);
  const r = recorder();
  await follow({ call: paved.call, requestId: 'q9', requestUrl: 'http://paved/q9', logger: r.logger, pollMs: 0, sleep: noSleep });
  assert.deepEqual(r.lines.filter(l => l.includes('approv') || l.includes('Waiting')), [
    'info paved request q9 waits for approval; this step waits as long as it takes (within the task\'s user token). http://paved/q9',
    'info Waiting for a platform-admin: team budget exceeded; only a platform-admin may approve it (a team lead cannot)',
  ]);
});
