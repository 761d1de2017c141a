// Test helpers: a fake paved (a fetch that answers paved's documented shapes from a table,
// named as a fake because no paved runs inside jsdom; the real one is in the browser test).
import type { DiscoveryApi, FetchApi } from '@backstage/core-plugin-api';
import { PavedClient } from './api';

export type FakeRoute = { status?: number; body: unknown };

export function fakePaved(routes: Record<string, FakeRoute | ((init?: RequestInit) => FakeRoute)>) {
  const calls: { method: string; path: string; body?: string }[] = [];
  const fetchApi: FetchApi = {
    fetch: async (input: any, init?: RequestInit) => {
      const url = new URL(String(input));
      const path = url.pathname.replace(/^\/api\/paved/, '') + url.search;
      const method = init?.method ?? 'GET';
      calls.push({ method, path, body: init?.body as string | undefined });
      const route = routes[`${method} ${path}`];
      const r =
        typeof route === 'function'
          ? route(init)
          : (route ?? {
              status: 404,
              body: { error: { name: 'NotFoundError', message: `no route ${method} ${path}` } },
            });
      return new Response(JSON.stringify(r.body), {
        status: r.status ?? 200,
        headers: { 'content-type': 'application/json' },
      });
    },
  };
  const discoveryApi: DiscoveryApi = {
    getBaseUrl: async (id: string) => `http://paved.test/api/${id}`,
  };
  return { client: new PavedClient({ discoveryApi, fetchApi }), calls };
}

export const notFound = (what: string): FakeRoute => ({
  status: 404,
  body: {
    error: { name: 'NotFoundError', message: `no resource with id ${JSON.stringify(what)}` },
    response: { statusCode: 404 },
  },
});
