// paved's REST API as the plugin sees it: one method per call the cards make, the types of
// the fields they show, and paved's error envelope turned into an Error with paved's message.
// No decisions here: who may see what, how far a TTL may go, what a resource costs, all come
// from paved's answers.
import {
  createApiRef,
  type DiscoveryApi,
  type FetchApi,
} from '@backstage/core-plugin-api';

/** The annotation paved writes on every Resource entity it publishes. */
export const PAVED_RESOURCE_ID = 'paved.dev/resource-id';

export interface PavedResource {
  id: string;
  name: string;
  type: string;
  offering: string;
  environment: string;
  owner: string;
  status: string;
  monthlyCost: number | null;
  expiresAt: string | null;
  requestId: string;
  /** Per part: what paved reports about it (never credentials). */
  outputs: Record<string, unknown>;
}

export interface PavedCost {
  currency: string;
  monthly: number;
  monthToDate: number;
  forecastMonthEnd: number;
  expiresAt: string | null;
}

export interface PavedStep {
  number: number;
  name: string;
  status: string;
  error: string | null;
}

export interface PavedRequest {
  id: string;
  offering: string;
  owner: string;
  requester: string;
  operation: string;
  status: string;
  error: string | null;
  createdAt: string;
  steps: PavedStep[];
}

export interface PavedFinding {
  id: number;
  part: string;
  field: string;
  status: string;
  expected: unknown;
  actual: unknown;
}

export interface PavedDrift {
  status: string;
  checkedAt: string | null;
  findings: PavedFinding[];
}

export interface PavedSpend {
  team: string;
  currency: string;
  activeResources: number;
  currentMonthly: number;
  monthToDate: number;
  forecastMonthEnd: number;
}

export interface PavedBudget {
  team: string;
  currency: string;
  monthlyLimit: number | null;
}

export interface PavedPage<T> {
  items: T[];
  nextCursor?: string;
}

/** A daily cost series in Cost Insights' shape, as paved answers it. */
export interface PavedDailyCost {
  id: string;
  aggregation: { date: string; amount: number }[];
  change?: { amount: number; ratio?: number | null } | null;
  trendline?: { slope: number; intercept: number } | null;
}

/** Credentials, or paved's "not for you" (it answers 404 to anyone outside the owning team). */
export type PavedCredentials =
  | { visible: true; values: Record<string, unknown> }
  | { visible: false };

/** An answer paved refused, with paved's own message (which names the field and rule). */
export class PavedError extends Error {
  constructor(
    readonly status: number,
    readonly errorName: string,
    message: string,
  ) {
    super(message);
    this.name = 'PavedError';
  }
}

export interface PavedApi {
  resource(id: string): Promise<PavedResource>;
  cost(id: string): Promise<PavedCost>;
  extend(id: string, hours: number): Promise<PavedResource>;
  credentials(id: string): Promise<PavedCredentials>;
  drift(id: string): Promise<PavedDrift>;
  request(id: string): Promise<PavedRequest>;
  /** The newest request about a resource (its create, or a later update or delete). */
  lastRequest(resource: PavedResource): Promise<PavedRequest>;
  teamResources(team: string): Promise<PavedResource[]>;
  teamSpend(team: string): Promise<PavedSpend>;
  teamBudget(team: string): Promise<PavedBudget>;
  pendingApprovals(team: string): Promise<PavedRequest[]>;
  entityDailyCost(
    ref: { namespace: string; kind: string; name: string },
    intervals: string,
  ): Promise<PavedDailyCost>;
}

export const pavedApiRef = createApiRef<PavedApi>({ id: 'plugin.paved.api' });

/**
 * Calls paved through Backstage's `fetchApi` (which adds the signed-in user's Backstage token,
 * so paved authorizes the real user) at `discoveryApi.getBaseUrl('paved')`.
 */
export class PavedClient implements PavedApi {
  private readonly discoveryApi: DiscoveryApi;
  private readonly fetchApi: FetchApi;

  constructor(options: { discoveryApi: DiscoveryApi; fetchApi: FetchApi }) {
    this.discoveryApi = options.discoveryApi;
    this.fetchApi = options.fetchApi;
  }

  resource(id: string) {
    return this.get<PavedResource>(`/v1/resources/${enc(id)}`);
  }
  cost(id: string) {
    return this.get<PavedCost>(`/v1/resources/${enc(id)}/cost`);
  }
  extend(id: string, hours: number) {
    return this.call<PavedResource>('POST', `/v1/resources/${enc(id)}/extend`, { hours });
  }
  async credentials(id: string): Promise<PavedCredentials> {
    try {
      const values = await this.get<Record<string, unknown>>(
        `/v1/resources/${enc(id)}/credentials`,
      );
      return { visible: true, values };
    } catch (e) {
      // paved hides a resource's credentials from everyone outside its team as "not found".
      if (e instanceof PavedError && e.status === 404) return { visible: false };
      throw e;
    }
  }
  drift(id: string) {
    return this.get<PavedDrift>(`/v1/resources/${enc(id)}/drift`);
  }
  request(id: string) {
    return this.get<PavedRequest>(`/v1/requests/${enc(id)}`);
  }
  async lastRequest(resource: PavedResource) {
    // The newest request about the resource (paved lists them newest first), read whole for
    // its steps (a list carries none); the one that created it if paved lists none.
    const page = await this.get<PavedPage<PavedRequest>>(
      `/v1/requests?resource=${enc(resource.id)}&limit=1`,
    );
    return this.request(page.items[0]?.id ?? resource.requestId);
  }
  async teamResources(team: string) {
    return (await this.get<PavedPage<PavedResource>>(`/v1/resources?owner=${enc(team)}`)).items;
  }
  teamSpend(team: string) {
    return this.get<PavedSpend>(`/v1/teams/${enc(team)}/spend`);
  }
  teamBudget(team: string) {
    return this.get<PavedBudget>(`/v1/teams/${enc(team)}/budget`);
  }
  async pendingApprovals(team: string) {
    return (
      await this.get<PavedPage<PavedRequest>>(
        `/v1/requests?owner=${enc(team)}&status=awaiting_approval`,
      )
    ).items;
  }
  entityDailyCost(
    ref: { namespace: string; kind: string; name: string },
    intervals: string,
  ) {
    return this.get<PavedDailyCost>(
      `/v1/cost-insights/entity/${enc(ref.namespace)}/${enc(ref.kind)}/${enc(ref.name)}/${enc(intervals)}`,
    );
  }

  private get<T>(path: string) {
    return this.call<T>('GET', path);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const base = await this.discoveryApi.getBaseUrl('paved');
    const res = await this.fetchApi.fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? undefined : { 'content-type': 'application/json' },
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
      // paved's errors come in Backstage's envelope: show its message, not a status code.
      const err = json?.error;
      throw new PavedError(
        res.status,
        err?.name ?? 'Error',
        err?.message ?? `paved answered ${res.status} ${res.statusText}`,
      );
    }
    return json as T;
  }
}

function enc(s: string) {
  return encodeURIComponent(s);
}
