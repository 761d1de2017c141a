import { describe, expect, it } from 'vitest';
import { screen } from '@testing-library/react';
import { renderInTestApp, TestApiProvider } from '@backstage/test-utils';
import { EntityProvider } from '@backstage/plugin-catalog-react';
import { pavedApiRef } from './api';
import { PavedGroupCard } from './components/GroupCard';
import { fakePaved } from './testing';

describe('EntityPavedGroupCard', () => {
  it("shows the team's resources, spend against budget and pending approvals", async () => {
    const { client } = fakePaved({
      'GET /v1/resources?owner=team-a': {
        body: {
          items: [
            { id: 'r1', name: 'orders-cache', offering: 'redis-cache', environment: 'dev',
              status: 'ready', monthlyCost: 12.5, expiresAt: null },
          ],
        },
      },
      'GET /v1/teams/team-a/spend': {
        body: { team: 'team-a', currency: 'USD', activeResources: 1, currentMonthly: 12.5,
                monthToDate: 3.2, forecastMonthEnd: 12.5 },
      },
      'GET /v1/teams/team-a/budget': {
        body: { team: 'team-a', currency: 'USD', monthlyLimit: 100, source: 'set' },
      },
      'GET /v1/requests?owner=team-a&status=awaiting_approval': {
        body: {
          items: [{ id: 'q9', offering: 'postgres-database', requester: 'alice',
                    operation: 'create', createdAt: '2026-12-01T09:30:00Z', steps: [] }],
        },
      },
    });
    await renderInTestApp(
      <TestApiProvider apis={[[pavedApiRef, client]]}>
        <EntityProvider
          entity={{ apiVersion: 'backstage.io/v1alpha1', kind: 'Group',
                    metadata: { name: 'team-a' }, spec: { type: 'team', children: [] } }}
        >
          <PavedGroupCard />
        </EntityProvider>
      </TestApiProvider>,
    );
    expect((await screen.findByTestId('paved-spend')).textContent).toBe(
      '$3.20 this month, $12.50 a month for 1 resources, forecast $12.50 · budget $100.00 a month',
    );
    expect(screen.getByTestId('paved-team-resources').textContent).toBe(
      'orders-cache (redis-cache, dev): ready, $12.50 a month, expires never',
    );
    expect(screen.getByTestId('paved-pending').textContent).toBe(
      'postgres-database by alice (create, 2026-12-01 09:30 UTC)',
    );
  });
});
