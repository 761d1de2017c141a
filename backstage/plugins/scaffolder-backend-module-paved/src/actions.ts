import type {
  AuthService,
  BackstageCredentials,
  DiscoveryService,
} from '@backstage/backend-plugin-api';
import { createTemplateAction } from '@backstage/plugin-scaffolder-node';
import { pavedCall } from './client';
import { follow } from './follow';

export interface PavedActionsOptions {
  auth: AuthService;
  discovery: DiscoveryService;
  /** Where discovery finds paved (default `paved`); also the actions' id prefix. */
  pluginId: string;
  /** Between reads of a request that is being followed. */
  pollMs: number;
}

/** paved's API as the task's user: a plugin token on their behalf for every call. */
function callAs(o: PavedActionsOptions, credentials: () => Promise<BackstageCredentials>) {
  return pavedCall(
    async () => `${await o.discovery.getBaseUrl(o.pluginId)}`,
    async () =>
      (
        await o.auth.getPluginRequestToken({
          onBehalfOf: await credentials(),
          targetPluginId: o.pluginId,
        })
      ).token,
  );
}

/**
 * `<plugin id>:provision` in-process: places the order as the user who runs the task, then
 * follows it to its end, every step paved records in the task log as it happens. The same
 * output as paved's remote action, plus what `paved:wait` gives once it is done.
 */
export function createProvisionAction(o: PavedActionsOptions) {
  return createTemplateAction({
    id: `${o.pluginId}:provision`,
    description:
      "Orders infrastructure from paved (validated, priced, policy-checked by paved) as the task's user, and follows the request to its end, writing each of paved's steps into the task log. Idempotent on idempotencyKey (default: the task id), so task recovery does not order twice.",
    schema: {
      input: {
        offering: z => z.string().min(1).describe('Offering (template) name, e.g. postgres-database'),
        values: z =>
          z.record(z.string(), z.unknown()).describe("The template's parameters, e.g. ${{ parameters }}"),
        idempotencyKey: z =>
          z.string().min(1).max(200).optional().describe('e.g. ${{ context.task.id }} (the default)'),
      },
      output: {
        requestId: z => z.string(),
        status: z => z.string(),
        requestUrl: z => z.string(),
        monthlyCost: z => z.number().nullable().optional(),
        warnings: z => z.array(z.unknown()).optional(),
        resourceId: z => z.string().optional(),
        entityRef: z => z.string().optional(),
      },
    },
    async handler(ctx) {
      const call = callAs(o, () => ctx.getInitiatorCredentials());
      const base = await o.discovery.getBaseUrl(o.pluginId);
      // A checkpoint: recovery after a crash resumes following the request it placed.
      const placed = await ctx.checkpoint({
        key: `paved-order-${ctx.step?.id ?? 'provision'}`,
        fn: async () => {
          const r = await call('POST', '/v1/requests', {
            offering: ctx.input.offering,
            values: ctx.input.values,
            idempotencyKey: ctx.input.idempotencyKey ?? ctx.task.id,
          });
          return {
            id: String(r.id),
            monthlyCost: typeof r.estimate?.monthly === 'number' ? r.estimate.monthly : null,
            warnings: (r.decision?.warn ?? []) as any[],
          };
        },
      });
      const requestUrl = `${base}/v1/requests/${placed.id}`;
      ctx.logger.info(`paved request ${placed.id} placed: ${requestUrl}`);
      ctx.output('requestId', placed.id);
      ctx.output('requestUrl', requestUrl);
      ctx.output('monthlyCost', placed.monthlyCost);
      ctx.output('warnings', placed.warnings);
      const { request } = await follow({
        call,
        requestId: placed.id,
        requestUrl,
        logger: ctx.logger,
        pollMs: o.pollMs,
        signal: ctx.signal,
      });
      ctx.output('status', request.status);
      if (request.resourceId) {
        ctx.output('resourceId', request.resourceId);
        const resource = await call('GET', `/v1/resources/${encodeURIComponent(request.resourceId)}`);
        ctx.output('entityRef', `resource:default/${resource.name}`);
      }
    },
  });
}
