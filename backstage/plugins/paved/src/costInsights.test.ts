import { describe, expect, it } from 'vitest';
import { PavedCostInsightsClient } from './costInsights';
import { fakePaved } from './testing';

const identityApi = {
  getBackstageIdentity: async () => ({
    type: 'user' as const,
    userEntityRef: 'user:default/alice',
    ownershipEntityRefs: ['user:default/alice', 'group:default/team-a'],
  }),
  getProfileInfo: async () => ({}),
  getCredentials: async () => ({ token: 't' }),
  signOut: async () => {},
};

describe('PavedCostInsightsClient', () => {
  it("asks paved for a group's daily cost and answers Cost Insights' shape", async () => {
    const { client, calls } = fakePaved({
      'GET /v1/cost-insights/entity/default/group/team-a/R2%2FP30D%2F2026-11-24': {
        body: {
          id: 'group:default/team-a',
          aggregation: [{ date: '2026-10-25', amount: 0 }],
          change: { amount: 4, ratio: null },
          trendline: null,
          groupedCosts: null,
        },
      },
    });
    const ci = new PavedCostInsightsClient({
      pavedApi: client,
      identityApi,
      now: () => new Date('2026-12-02T01:00:00Z'),
    });
    expect(await ci.getGroupDailyCost('team-a', 'R2/P30D/2026-11-24')).toEqual({
      id: 'group:default/team-a',
      aggregation: [{ date: '2026-10-25', amount: 0 }],
      change: { amount: 4 },
    });
    expect(calls).toHaveLength(1);
    expect(await ci.getUserGroups('alice')).toEqual([{ id: 'team-a', name: 'team-a' }]);
    expect(await ci.getLastCompleteBillingDate()).toBe('2026-12-01');
  });
});
