// The Resource entity card: what paved reports about one resource, and the two things a
// member of its team does from the page (extend its TTL, read its credentials). Every value
// and every refusal is paved's; the card only lays them out.
import React, { useState } from 'react';
import { InfoCard, Progress } from '@backstage/core-components';
import { useApi } from '@backstage/core-plugin-api';
import { useEntity } from '@backstage/plugin-catalog-react';
import {
  PAVED_RESOURCE_ID,
  PavedError,
  pavedApiRef,
  type PavedApi,
  type PavedCredentials,
  type PavedDrift,
  type PavedRequest,
} from '../api';
import { errorMessage, money, when } from './format';
import { useLoad } from './useAsync';

async function loadResource(api: PavedApi, id: string) {
  const resource = await api.resource(id);
  // The rest is shown when paved has it; one of them failing does not hide the others.
  const [cost, drift, request] = await Promise.allSettled([
    api.cost(id),
    api.drift(id),
    api.lastRequest(resource),
  ]);
  return { resource, cost, drift, request };
}

function Row(props: { label: string; testId: string; children: React.ReactNode }) {
  return (
    <tr>
      <th style={{ textAlign: 'left', paddingRight: 16, verticalAlign: 'top' }}>{props.label}</th>
      <td data-testid={props.testId}>{props.children}</td>
    </tr>
  );
}

function settled<T>(r: PromiseSettledResult<T>, show: (v: T) => React.ReactNode) {
  return r.status === 'fulfilled' ? show(r.value) : <em>{errorMessage(r.reason)}</em>;
}

function Steps({ request }: { request: PavedRequest }) {
  return (
    <div data-testid="paved-steps">
      <div>
        {request.operation} {request.id}: {request.status}
        {request.error ? ` (${request.error})` : ''}
      </div>
      <ol style={{ margin: 0 }}>
        {request.steps.map(s => (
          <li key={s.number}>
            {s.name}: {s.status}
            {s.error ? ` (${s.error})` : ''}
          </li>
        ))}
      </ol>
    </div>
  );
}

function Drift({ drift }: { drift: PavedDrift }) {
  const open = drift.findings;
  return (
    <div data-testid="paved-drift">
      {drift.checkedAt ? `${drift.status}, checked ${when(drift.checkedAt)}` : 'never checked'}
      {open.length > 0 && (
        <ul style={{ margin: 0 }}>
          {open.map(f => (
            <li key={f.id}>
              {f.part}.{f.field}: expected {JSON.stringify(f.expected)}, found{' '}
              {JSON.stringify(f.actual)} ({f.status})
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function Extend(props: { id: string; onExtended: () => void }) {
  const api = useApi(pavedApiRef);
  const [hours, setHours] = useState('24');
  const [message, setMessage] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    setBusy(true);
    setMessage(undefined);
    try {
      // paved checks the hours against the offering's maximum and says why when it refuses.
      const r = await api.extend(props.id, Number(hours));
      setMessage(`Extended: expires ${when(r.expiresAt)}`);
      props.onExtended();
    } catch (e) {
      setMessage(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span>
      <input
        aria-label="Hours to extend by"
        type="number"
        min={1}
        value={hours}
        onChange={e => setHours(e.target.value)}
        style={{ width: 64, marginLeft: 8 }}
      />{' '}
      <button type="button" onClick={submit} disabled={busy}>
        Extend
      </button>
      {message && (
        <div role="status" data-testid="paved-extend-message">
          {message}
        </div>
      )}
    </span>
  );
}

function Credentials({ id }: { id: string }) {
  const api = useApi(pavedApiRef);
  const [shown, setShown] = useState<PavedCredentials | { error: string } | undefined>();
  const reveal = async () => {
    try {
      setShown(await api.credentials(id));
    } catch (e) {
      setShown({ error: errorMessage(e) });
    }
  };
  if (!shown)
    return (
      <button type="button" onClick={reveal}>
        Show credentials
      </button>
    );
  if ('error' in shown) return <em role="alert">{shown.error}</em>;
  if (!shown.visible) return <em>paved does not show these credentials to you</em>;
  return (
    <div data-testid="paved-credentials">
      <Values values={shown.values} path="" />
    </div>
  );
}

/** Credentials as paved nests them (per part, then per name); each value names its path. */
function Values({ values, path }: { values: Record<string, unknown>; path: string }) {
  return (
    <dl style={{ margin: 0 }}>
      {Object.entries(values).map(([k, v]) => {
        const at = path ? `${path}.${k}` : k;
        return (
          <React.Fragment key={k}>
            <dt style={{ fontWeight: 'bold' }}>{k}</dt>
            <dd style={{ margin: '0 0 0 16px', fontFamily: 'monospace' }}>
              {v !== null && typeof v === 'object' && !Array.isArray(v) ? (
                <Values values={v as Record<string, unknown>} path={at} />
              ) : (
                <span data-credential={at}>{typeof v === 'string' ? v : JSON.stringify(v)}</span>
              )}
            </dd>
          </React.Fragment>
        );
      })}
    </dl>
  );
}

/** paved's view of the entity's resource: for Resource entities paved published. */
export function PavedResourceCard(props: { title?: string }) {
  const { entity } = useEntity();
  const api = useApi(pavedApiRef);
  const id = entity.metadata.annotations?.[PAVED_RESOURCE_ID];
  const [loaded, reload] = useLoad(
    () => (id ? loadResource(api, id) : Promise.reject(new Error('no annotation'))),
    [api, id],
  );
  const title = props.title ?? 'paved';
  if (!id)
    return (
      <InfoCard title={title}>
        This entity has no {PAVED_RESOURCE_ID} annotation: paved did not publish it.
      </InfoCard>
    );
  if (loaded.state === 'loading')
    return (
      <InfoCard title={title}>
        <Progress />
      </InfoCard>
    );
  if (loaded.state === 'error') {
    const e = loaded.error;
    // paved answers 404 for a resource outside the caller's teams, exactly as for none.
    const text =
      e instanceof PavedError && e.status === 404
        ? `paved shows this resource only to its team (${e.message})`
        : errorMessage(e);
    return (
      <InfoCard title={title}>
        <div role="alert" data-testid="paved-error">
          {text}
        </div>
      </InfoCard>
    );
  }
  const { resource: r, cost, drift, request } = loaded.value;
  const parts = Object.entries(r.outputs ?? {});
  return (
    <InfoCard title={title} subheader={`${r.offering} · ${r.environment} · ${r.owner}`}>
      <table data-testid="paved-resource-card">
        <tbody>
          <Row label="Status" testId="paved-status">
            {r.status}
          </Row>
          <Row label="Monthly cost" testId="paved-monthly-cost">
            {settled(cost, c => money(c.monthly, c.currency))}
          </Row>
          <Row label="Month to date" testId="paved-month-to-date">
            {settled(cost, c => money(c.monthToDate, c.currency))}
          </Row>
          <Row label="Expires" testId="paved-expires">
            <span data-testid="paved-expires-at" data-value={r.expiresAt ?? ''}>
              {when(r.expiresAt)}
            </span>
            {r.expiresAt && <Extend id={r.id} onExtended={reload} />}
          </Row>
          <Row label="Parts" testId="paved-parts">
            {parts.length === 0 ? (
              '—'
            ) : (
              <ul style={{ margin: 0 }}>
                {parts.map(([part]) => {
                  const drifted =
                    drift.status === 'fulfilled' &&
                    drift.value.findings.some(f => f.part === part);
                  // paved keeps one status per resource; a part's own is its drift.
                  return (
                    <li key={part}>
                      {part}: {r.status}
                      {drifted ? ', drifted' : ''}
                    </li>
                  );
                })}
              </ul>
            )}
          </Row>
          <Row label="Last request" testId="paved-last-request">
            {settled(request, q => (
              <Steps request={q} />
            ))}
          </Row>
          <Row label="Drift" testId="paved-drift-row">
            {settled(drift, d => (
              <Drift drift={d} />
            ))}
          </Row>
          <Row label="Credentials" testId="paved-credentials-row">
            <Credentials id={r.id} />
          </Row>
        </tbody>
      </table>
    </InfoCard>
  );
}

/** The same, as a whole entity tab. */
export function PavedResourceContent() {
  return <PavedResourceCard title="paved resource" />;
}
