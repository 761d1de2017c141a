// The Group entity card: a team's resources, its spend against its budget and the requests
// waiting for approval, all as paved answers them for the signed-in user.

import { InfoCard, Progress } from '@backstage/core-components';
import { useApi } from '@backstage/core-plugin-api';
import { useEntity } from '@backstage/plugin-catalog-react';
import { pavedApiRef } from '../api';
import { errorMessage, money, when } from './format';
import { useLoad } from './useAsync';

export function PavedGroupCard(props: { title?: string }) {
  const { entity } = useEntity();
  const api = useApi(pavedApiRef);
  // paved names teams as Backstage's groups: `team-a` is `group:default/team-a`.
  const team = entity.metadata.name;
  const [loaded] = useLoad(
    () =>
      Promise.allSettled([
        api.teamResources(team),
        api.teamSpend(team),
        api.teamBudget(team),
        api.pendingApprovals(team),
      ]),
    [api, team],
  );
  const title = props.title ?? 'paved';
  if (loaded.state !== 'done')
    return (
      <InfoCard title={title}>
        {loaded.state === 'loading' ? <Progress /> : errorMessage(loaded.error)}
      </InfoCard>
    );
  const [resources, spend, budget, pending] = loaded.value;
  const fail = (r: PromiseRejectedResult) => <em role="alert">{errorMessage(r.reason)}</em>;
  return (
    <InfoCard title={title} subheader={team}>
      <h4 style={{ margin: '0 0 4px' }}>Spend</h4>
      <div data-testid="paved-spend">
        {spend.status === 'rejected'
          ? fail(spend)
          : `${money(spend.value.monthToDate, spend.value.currency)} this month, ${money(
              spend.value.currentMonthly,
              spend.value.currency,
            )} a month for ${spend.value.activeResources} resources, forecast ${money(
              spend.value.forecastMonthEnd,
              spend.value.currency,
            )}`}
        {budget.status === 'rejected'
          ? fail(budget)
          : ` · budget ${
              budget.value.monthlyLimit === null
                ? 'none'
                : `${money(budget.value.monthlyLimit, budget.value.currency)} a month`
            }`}
      </div>
      <h4 style={{ margin: '12px 0 4px' }}>Resources</h4>
      {resources.status === 'rejected' ? (
        fail(resources)
      ) : resources.value.length === 0 ? (
        <div>none</div>
      ) : (
        <ul data-testid="paved-team-resources" style={{ margin: 0 }}>
          {resources.value.map(r => (
            <li key={r.id}>
              {r.name} ({r.offering}, {r.environment}): {r.status}, {money(r.monthlyCost)} a
              month, expires {when(r.expiresAt)}
            </li>
          ))}
        </ul>
      )}
      <h4 style={{ margin: '12px 0 4px' }}>Waiting for approval</h4>
      {pending.status === 'rejected' ? (
        fail(pending)
      ) : pending.value.length === 0 ? (
        <div>none</div>
      ) : (
        <ul data-testid="paved-pending" style={{ margin: 0 }}>
          {pending.value.map(q => (
            <li key={q.id}>
              {q.offering} by {q.requester} ({q.operation}, {when(q.createdAt)})
            </li>
          ))}
        </ul>
      )}
    </InfoCard>
  );
}
