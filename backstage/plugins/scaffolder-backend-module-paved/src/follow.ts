import { PavedCall, PavedError } from './client';

interface Step {
  name: string;
  status: string;
  error?: string | null;
}

interface LogLine {
  step?: string | null;
  message: string;
  level: string;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** What following ends with: the request as paved shows it last. */
export interface Followed {
  request: any;
}

/**
 * An error for the task log: the scaffolder writes a failed step's stack, and a Node stack
 * trace under paved's reason is what the remote path could not avoid; this one is the reason.
 */
function failure(message: string): Error {
  const e = new Error(message);
  e.stack = `Error: ${message}`;
  return e;
}

const FINAL = new Set(['succeeded', 'failed', 'denied', 'rejected', 'cancelled']);

export interface FollowOptions {
  call: PavedCall;
  requestId: string;
  /** paved's API route of the request, for messages. */
  requestUrl: string;
  logger: Logger;
  /** Between reads of the request. */
  pollMs: number;
  signal?: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Follows a paved request to its end, writing into the task log every step paved records
 * (and every log line) as it happens. Resolves when it succeeded; throws with the failing
 * step, its position, its error and the request's link when it did not. Backstage's cancel
 * (the task's abort signal) cancels the paved request.
 */
export async function follow(o: FollowOptions): Promise<Followed> {
  const sleep = o.sleep ?? (ms => new Promise(r => setTimeout(r, ms)));
  const stepStatus = new Map<string, string>();
  let logsSeen = 0;
  let toldWaiting = false;
  for (;;) {
    if (o.signal?.aborted) {
      await o.call('POST', `/v1/requests/${encodeURIComponent(o.requestId)}/cancel`).catch(e => {
        o.logger.warn(`paved did not cancel request ${o.requestId}: ${e.message}`);
      });
      throw failure(`Cancelled: paved request ${o.requestId} was asked to cancel. ${o.requestUrl}`);
    }
    let r: any;
    try {
      r = await o.call('GET', `/v1/requests/${encodeURIComponent(o.requestId)}`);
      logsSeen = await writeLogs(o, logsSeen);
    } catch (e) {
      if (e instanceof PavedError && e.status === 401) {
        throw failure(
          `Stopped following paved request ${o.requestId}: the task's user token is no longer accepted (${e.message}). The request goes on in paved: ${o.requestUrl}`,
        );
      }
      throw e;
    }
    const steps: Step[] = r.steps ?? [];
    steps.forEach((s, i) => {
      if (stepStatus.get(s.name) !== s.status && s.status !== 'pending') {
        stepStatus.set(s.name, s.status);
        const line = `Step ${i + 1} of ${steps.length}, ${s.name}: ${s.status}${s.error ? ` (${s.error})` : ''}`;
        if (s.status === 'failed') o.logger.error(line);
        else o.logger.info(line);
      }
    });
    if (r.status === 'awaiting_approval' && !toldWaiting) {
      toldWaiting = true;
      o.logger.info(
        `paved request ${o.requestId} waits for approval; this step waits as long as it takes (within the task's user token). ${o.requestUrl}`,
      );
      // Who may decide and why, in paved's words (its policies' reasons name the role).
      const approvals = await o
        .call('GET', `/v1/requests/${encodeURIComponent(o.requestId)}/approvals`)
        .catch(() => ({ items: [] }));
      for (const a of (approvals.items ?? []) as { status: string; requiredRole: string; reason: string }[]) {
        if (a.status === 'pending') {
          o.logger.info(`Waiting for a ${a.requiredRole}: ${a.reason}`);
        }
      }
    }
    if (FINAL.has(r.status)) {
      if (r.status === 'succeeded') {
        return { request: r };
      }
      const i = steps.findIndex(s => s.status === 'failed');
      const where =
        i >= 0 ? ` at step ${i + 1} of ${steps.length} (${steps[i].name})` : '';
      const why = (i >= 0 ? steps[i].error : null) ?? r.error ?? r.status;
      // paved's own message names the step, its position and the logs' link already.
      if (/^failed at step \d+ of \d+/.test(why)) {
        throw failure(`paved request ${o.requestId} ${why}`);
      }
      throw failure(`paved request ${o.requestId} ${r.status}${where}: ${why}. ${o.requestUrl}`);
    }
    await sleep(o.pollMs);
  }
}

/** Writes the request's log lines past the first `seen`; returns how many there are now. */
async function writeLogs(o: FollowOptions, seen: number): Promise<number> {
  let n = 0;
  let cursor: string | undefined;
  do {
    const q = `limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await o.call('GET', `/v1/requests/${encodeURIComponent(o.requestId)}/logs?${q}`);
    for (const line of (page.items ?? []) as LogLine[]) {
      if (n++ >= seen) {
        const text = `${line.step ? `[${line.step}] ` : ''}${line.message}`;
        if (line.level === 'error') o.logger.error(text);
        else if (line.level === 'warn') o.logger.warn(text);
        else o.logger.info(text);
      }
    }
    cursor = page.nextCursor;
  } while (cursor);
  return n;
}
