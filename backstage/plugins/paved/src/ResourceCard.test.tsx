import { describe, expect, it } from 'vitest';
import { fireEvent, screen, waitFor } from '@testing-library/react';
import { renderInTestApp, TestApiProvider } from '@backstage/test-utils';
import { EntityProvider } from '@backstage/plugin-catalog-react';
import type { Entity } from '@backstage/catalog-model';
import { pavedApiRef } from './api';
import { PavedResourceCard } from './components/ResourceCard';
import { fakePaved, notFound } from './testing';

const entity: Entity = {
  apiVersion: 'backstage.io/v1alpha1',
  kind: 'Resource',
  metadata: {
    name: 'orders-cache',
    annotations: { 'paved.dev/resource-id': 'r1', 'paved.dev/status': 'ready' },
  },
  spec: { type: 'cache', owner: 'group:default/team-a' },
};

const resource = {
  id: 'r1',
  name: 'orders-cache',
  type: 'cache',
  offering: 'redis-cache',
  environment: 'dev',
  owner: 'team-a',
  status: 'ready',
  monthlyCost: 12.5,
  expiresAt: '2026-12-09T10:00:00+00:00',
  requestId: 'q1',
  outputs: { cache: { host: '127.0.0.1' } },
};

const paved = (extra: Record<string, any> = {}) =>
  fakePaved({
    'GET /v1/resources/r1': { body: resource },
    'GET /v1/resources/r1/cost': {
      body: { currency: 'USD', monthly: 12.5, monthToDate: 3.2, forecastMonthEnd: 12.5 },
    },
    'GET /v1/resources/r1/drift': {
      body: {
        status: 'detected',
        checkedAt: '2026-12-02T08:00:00Z',
        findings: [
          { id: 7, part: 'cache', field: 'maxmemory', status: 'open', expected: '64mb', actual: '128mb' },
        ],
      },
    },
    // The resource's requests, newest first: its last one is an update (a list has no steps).
    'GET /v1/requests?resource=r1&limit=1': {
      body: { items: [{ id: 'q2', resourceId: 'r1', operation: 'update', status: 'succeeded', steps: [] }] },
    },
    'GET /v1/requests/q2': {
      body: {
        id: 'q2',
        operation: 'update',
        status: 'succeeded',
        error: null,
        steps: [{ number: 1, name: 'apply cache', status: 'succeeded', error: null }],
      },
    },
    'GET /v1/requests/q1': {
      body: {
        id: 'q1',
        operation: 'create',
        status: 'succeeded',
        error: null,
        steps: [
          { number: 1, name: 'validate', status: 'succeeded', error: null },
          { number: 2, name: 'apply cache', status: 'succeeded', error: null },
        ],
      },
    },
    ...extra,
  });

async function render(client: ReturnType<typeof fakePaved>['client']) {
  await renderInTestApp(
    <TestApiProvider apis={[[pavedApiRef, client]]}>
      <EntityProvider entity={entity}>
        <PavedResourceCard />
      </EntityProvider>
    </TestApiProvider>,
  );
}

describe('EntityPavedResourceCard', () => {
  it('shows what paved reports: status, cost, expiry, parts, steps and drift', async () => {
    await render(paved().client);
    expect(await screen.findByTestId('paved-status')).toHaveProperty('textContent', 'ready');
    expect(screen.getByTestId('paved-monthly-cost').textContent).toBe('$12.50');
    expect(screen.getByTestId('paved-month-to-date').textContent).toBe('$3.20');
    expect(screen.getByTestId('paved-expires-at').textContent).toBe('2026-12-09 10:00 UTC');
    expect(screen.getByTestId('paved-parts').textContent).toBe('cache: ready, drifted');
    expect(screen.getByTestId('paved-steps').textContent).toBe(
      'update q2: succeededapply cache: succeeded',
    );
    expect(screen.getByTestId('paved-drift').textContent).toContain(
      'cache.maxmemory: expected "64mb", found "128mb"',
    );
  });

  it('reveals the credentials paved answers, only when asked', async () => {
    const { client, calls } = paved({
      'GET /v1/resources/r1/credentials': {
        body: { cache: { password: 's3cret', port: 6379 } },
      },
    });
    await render(client);
    const button = await screen.findByRole('button', { name: 'Show credentials' });
    // Reading credentials is audited: the card does not read them before the click.
    expect(calls.some(c => c.path.endsWith('/credentials'))).toBe(false);
    fireEvent.click(button);
    await screen.findByTestId('paved-credentials');
    const shown = [...document.querySelectorAll('[data-credential]')].map(e => [
      e.getAttribute('data-credential'),
      e.textContent,
    ]);
    expect(shown).toEqual([
      ['cache.password', 's3cret'],
      ['cache.port', '6379'],
    ]);
  });

  it("shows another team's user paved's answer and no credentials button", async () => {
    await render(fakePaved({ 'GET /v1/resources/r1': notFound('r1') }).client);
    expect((await screen.findByTestId('paved-error')).textContent).toContain(
      'paved shows this resource only to its team',
    );
    expect(screen.queryByRole('button', { name: 'Show credentials' })).toBeNull();
  });

  it("extends by the hours asked and shows paved's refusal beyond the maximum", async () => {
    const { client, calls } = paved({
      'POST /v1/resources/r1/extend': {
        status: 400,
        body: {
          error: {
            name: 'InputError',
            message: 'hours: maximum: redis-cache resources live at most 168 hours',
          },
        },
      },
    });
    await render(client);
    fireEvent.change(await screen.findByLabelText('Hours to extend by'), {
      target: { value: '500' },
    });
    fireEvent.click(screen.getByRole('button', { name: 'Extend' }));
    await waitFor(() =>
      expect(screen.getByTestId('paved-extend-message').textContent).toBe(
        'hours: maximum: redis-cache resources live at most 168 hours',
      ),
    );
    expect(calls.find(c => c.method === 'POST')?.body).toBe('{"hours":500}');
  });
});
