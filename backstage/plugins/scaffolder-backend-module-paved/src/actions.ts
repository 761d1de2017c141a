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

/** Every field of `out` as the step's output (the remote action's answer, passed on as is). */
function outputAll(output: unknown, out: Record<string, unknown>) {
  for (const [k, v] of Object.entries(out)) (output as (k: string, v: unknown) => void)(k, v);
}

/** paved's own remote action of this name, invoked as the task's user (its output as is). */
async function invokeRemote(call: ReturnType<typeof callAs>, pluginId: string, name: string, input: unknown) {
  const r = await call('POST', `/.backstage/actions/v1/actions/${encodeURIComponent(`${pluginId}:${name}`)}/invoke`, input);
  return (r?.output ?? {}) as Record<string, unknown>;
}

/**
 * `<plugin id>:estimate` in-process: paved's estimate as the task's user, its summary and each
 * cost line in the task log; the same output as paved's remote action (it is that action's
 * answer), so templates need no change.
 */
export function createEstimateAction(o: PavedActionsOptions) {
  return createTemplateAction({
    id: `${o.pluginId}:estimate`,
    description:
      "paved's cost and policy outcome for the form's values (as the task's user), before anything is ordered.",
    supportsDryRun: true,
    schema: {
      input: {
        offering: z => z.string().min(1).describe('Offering (template) name'),
        values: z => z.record(z.string(), z.unknown()).describe("The template's parameters"),
      },
      output: {
        valid: z => z.boolean(),
        errors: z => z.array(z.unknown()).optional(),
        outcome: z => z.unknown().optional(),
        monthlyCost: z => z.number().optional(),
        annualCost: z => z.number().optional(),
        currency: z => z.string().optional(),
        lineItems: z => z.array(z.unknown()).optional(),
        recommendations: z => z.array(z.unknown()).optional(),
        deny: z => z.array(z.unknown()).optional(),
        warnings: z => z.array(z.unknown()).optional(),
        approvals: z => z.array(z.unknown()).optional(),
        summary: z => z.string().optional(),
      },
    },
    async handler(ctx) {
      const call = callAs(o, () => ctx.getInitiatorCredentials());
      const out = await invokeRemote(call, o.pluginId, 'estimate', {
        offering: ctx.input.offering,
        values: ctx.input.values,
      });
      if (typeof out.summary === 'string') ctx.logger.info(`paved estimate: ${out.summary}`);
      for (const l of (out.lineItems ?? []) as { label?: string; monthly?: number }[]) {
        if (l.label !== undefined) ctx.logger.info(`  ${l.label}: ${l.monthly ?? ''}`);
      }
      outputAll(ctx.output, out);
    },
  });
}

/**
 * `<plugin id>:wait` in-process: follows the request to its end however long that takes
 * (an approval may take days; no fetch limit applies in-process), every step in the task log,
 * then answers what paved's remote action answers for a final request. A template's `each`
 * attempts find it final at once after the first.
 */
export function createWaitAction(o: PavedActionsOptions) {
  return createTemplateAction({
    id: `${o.pluginId}:wait`,
    description: "Waits until a paved request is final, writing paved's steps into the task log.",
    supportsDryRun: true,
    schema: {
      input: {
        requestId: z => z.string(),
        attempt: z => z.number().int().min(1).optional(),
        attempts: z => z.number().int().min(1).optional(),
      },
      output: {
        requestId: z => z.string(),
        status: z => z.string(),
        final: z => z.boolean(),
        requestUrl: z => z.string(),
        resourceId: z => z.string().optional(),
        entityRef: z => z.string().optional(),
        entityUrl: z => z.string().optional(),
      },
    },
    async handler(ctx) {
      // A template dry-run never placed an order (provision was skipped): nothing to wait for,
      // every key a real answer has, as paved's remote action answers then.
      if (ctx.isDryRun) {
        const placeholder = { requestId: 'dry-run', status: 'dry-run', final: true, requestUrl: '', resourceId: '', entityRef: '', entityUrl: '' };
        outputAll(ctx.output, placeholder);
        return;
      }
      const call = callAs(o, () => ctx.getInitiatorCredentials());
      const base = await o.discovery.getBaseUrl(o.pluginId);
      await follow({
        call,
        requestId: ctx.input.requestId,
        requestUrl: `${base}/v1/requests/${ctx.input.requestId}`,
        logger: ctx.logger,
        pollMs: o.pollMs,
        signal: ctx.signal,
      });
      const out = await invokeRemote(call, o.pluginId, 'wait', ctx.input);
      outputAll(ctx.output, out);
    },
  });
}
