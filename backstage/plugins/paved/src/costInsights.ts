// A Cost Insights API client over paved's Cost Insights-shaped endpoint
// (`GET /v1/cost-insights/entity/{namespace}/{kind}/{name}/{intervals}`), so the Cost Insights
// plugin shows paved's costs for Resources, Groups, Components and Systems.
//
// The types mirror `CostInsightsApi` of `@backstage-community/plugin-cost-insights` (the
// interface Cost Insights takes as its `costInsightsApiRef`) rather than importing them: that
// package is the whole Cost Insights frontend and is not in this registry. The shapes are
// structural, so this class is accepted where Cost Insights asks for its API.
import { parseEntityRef } from '@backstage/catalog-model';
import type { IdentityApi } from '@backstage/core-plugin-api';
import type { PavedApi } from './api';

export type Maybe<T> = T | null | undefined;
export interface DateAggregation {
  date: string;
  amount: number;
}
export interface ChangeStatistic {
  ratio?: number;
  amount: number;
}
export interface Trendline {
  slope: number;
  intercept: number;
}
export interface Cost {
  id: string;
  aggregation: DateAggregation[];
  change?: ChangeStatistic;
  trendline?: Trendline;
  groupedCosts?: Record<string, Cost[]>;
}
export interface MetricData {
  id: string;
  format: 'number' | 'currency';
  aggregation: DateAggregation[];
  change: ChangeStatistic;
}
export interface Group {
  id: string;
  name?: string;
}
export interface Project {
  id: string;
  name?: string;
}
export interface ProductInsightsOptions {
  product: string;
  group: string;
  intervals: string;
  project: Maybe<string>;
}
export interface CostInsightsEntity {
  id: Maybe<string>;
  aggregation: [number, number];
  change: ChangeStatistic;
  entities: Record<string, CostInsightsEntity[]>;
}
export interface CostInsightsApi {
  getLastCompleteBillingDate(): Promise<string>;
  getUserGroups(userId: string): Promise<Group[]>;
  getGroupProjects(group: string): Promise<Project[]>;
  getCatalogEntityDailyCost?(catalogEntityRef: string, intervals: string): Promise<Cost>;
  getGroupDailyCost(group: string, intervals: string): Promise<Cost>;
  getProjectDailyCost(project: string, intervals: string): Promise<Cost>;
  getDailyMetricData(metric: string, intervals: string): Promise<MetricData>;
  getProductInsights(options: ProductInsightsOptions): Promise<CostInsightsEntity>;
  getAlerts(group: string): Promise<unknown[]>;
}

export class PavedCostInsightsClient implements CostInsightsApi {
  private readonly paved: PavedApi;
  private readonly identityApi: IdentityApi;
  private readonly now: () => Date;

  /** `now` is the clock (tests pass a fixed one). */
  constructor(options: { pavedApi: PavedApi; identityApi: IdentityApi; now?: () => Date }) {
    this.paved = options.pavedApi;
    this.identityApi = options.identityApi;
    this.now = options.now ?? (() => new Date());
  }

  /** paved accrues costs hour by hour: yesterday (UTC) is the last complete day. */
  async getLastCompleteBillingDate(): Promise<string> {
    const d = this.now();
    const y = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - 1));
    return y.toISOString().slice(0, 10);
  }

  /** The signed-in user's groups, as Backstage knows them (paved's teams are those groups). */
  async getUserGroups(_userId: string): Promise<Group[]> {
    const identity = await this.identityApi.getBackstageIdentity();
    return identity.ownershipEntityRefs
      .map(ref => parseEntityRef(ref))
      .filter(r => r.kind.toLocaleLowerCase('en-US') === 'group')
      .map(r => ({ id: r.name, name: r.name }));
  }

  /** paved has no projects below a team. */
  async getGroupProjects(_group: string): Promise<Project[]> {
    return [];
  }

  async getCatalogEntityDailyCost(catalogEntityRef: string, intervals: string): Promise<Cost> {
    const ref = parseEntityRef(catalogEntityRef);
    return toCost(
      await this.paved.entityDailyCost(
        { namespace: ref.namespace, kind: ref.kind.toLocaleLowerCase('en-US'), name: ref.name },
        intervals,
      ),
    );
  }

  async getGroupDailyCost(group: string, intervals: string): Promise<Cost> {
    const ref = parseEntityRef(group, { defaultKind: 'group', defaultNamespace: 'default' });
    return this.getCatalogEntityDailyCost(
      `group:${ref.namespace}/${ref.name}`,
      intervals,
    );
  }

  async getProjectDailyCost(project: string, _intervals: string): Promise<Cost> {
    throw new Error(`paved has no projects (asked for ${JSON.stringify(project)}); use a group`);
  }

  /** paved reports no business metrics: an empty series, so Cost Insights shows none. */
  async getDailyMetricData(metric: string, _intervals: string): Promise<MetricData> {
    return { id: metric, format: 'number', aggregation: [], change: { amount: 0 } };
  }

  /** paved reports no cloud products: an empty breakdown. */
  async getProductInsights(options: ProductInsightsOptions): Promise<CostInsightsEntity> {
    return { id: options.product, aggregation: [0, 0], change: { amount: 0 }, entities: {} };
  }

  async getAlerts(_group: string): Promise<unknown[]> {
    return [];
  }
}

// paved writes `null` where Cost Insights' types leave a field out.
function toCost(c: import('./api').PavedDailyCost & { groupedCosts?: any }): Cost {
  const out: Cost = { id: c.id, aggregation: c.aggregation };
  if (c.change) {
    out.change = { amount: c.change.amount };
    if (c.change.ratio !== null && c.change.ratio !== undefined) out.change.ratio = c.change.ratio;
  }
  if (c.trendline) out.trendline = c.trendline;
  if (c.groupedCosts) {
    out.groupedCosts = Object.fromEntries(
      Object.entries(c.groupedCosts as Record<string, any[]>).map(([k, v]) => [k, v.map(toCost)]),
    );
  }
  return out;
}
