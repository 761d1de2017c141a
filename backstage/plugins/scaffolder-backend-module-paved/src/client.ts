/** A call to paved's REST API that answered an error status, with paved's message. */
export class PavedError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'PavedError';
  }
}

/** GET or POST a path under paved's plugin base URL (`/v1/...`), as one caller. */
export type PavedCall = (method: 'GET' | 'POST', path: string, body?: unknown) => Promise<any>;

/**
 * A thin client of paved's API: each call asks `token()` for a fresh token (the task's user,
 * through a plugin token on their behalf), so paved authorizes the real user on every call.
 */
export function pavedCall(baseUrl: () => Promise<string>, token: () => Promise<string>): PavedCall {
  return async (method, path, body) => {
    const res = await fetch(`${await baseUrl()}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${await token()}`,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      // Backstage's envelope: paved's reason is `error.message`.
      const message =
        typeof json?.error?.message === 'string'
          ? json.error.message
          : `${res.status} ${res.statusText}`;
      throw new PavedError(res.status, message);
    }
    return json;
  };
}
