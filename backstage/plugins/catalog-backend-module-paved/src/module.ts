import {
  coreServices,
  createBackendModule,
} from '@backstage/backend-plugin-api';
import { catalogProcessingExtensionPoint } from '@backstage/plugin-catalog-node';
import { FeedAnswer, FeedError, PavedEntityProvider, ReadFeed } from './provider';

/** Backstage's error envelope, or anything else a failed call answered. */
async function messageOf(res: Response): Promise<string> {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (typeof body?.error?.message === 'string') {
      return body.error.message;
    }
  } catch {
    // not JSON: the text itself
  }
  return `${res.status} ${res.statusText}: ${text.slice(0, 200)}`;
}

/**
 * The catalog module: paved's entities through an entity provider, so no url location,
 * `backend.reading.allow` entry or `catalog.rules` entry is needed for them.
 *
 * Config (all optional): `paved.pluginId` (default `paved`: where discovery finds paved),
 * `paved.catalog.pollSeconds` (default 3), `paved.catalog.fullSyncMinutes` (default 60).
 */
export const catalogModulePaved = createBackendModule({
  pluginId: 'catalog',
  moduleId: 'paved',
  register(env) {
    env.registerInit({
      deps: {
        catalog: catalogProcessingExtensionPoint,
        config: coreServices.rootConfig,
        logger: coreServices.logger,
        scheduler: coreServices.scheduler,
        discovery: coreServices.discovery,
        auth: coreServices.auth,
      },
      async init({ catalog, config, logger, scheduler, discovery, auth }) {
        const pluginId = config.getOptionalString('paved.pluginId') ?? 'paved';
        const pollSeconds = config.getOptionalNumber('paved.catalog.pollSeconds') ?? 3;
        const fullSyncMinutes =
          config.getOptionalNumber('paved.catalog.fullSyncMinutes') ?? 60;

        // As the catalog itself (a plugin token for paved): paved serves the feed to any
        // caller it accepts, and accepts the catalog by default (`auth.backstage_callers`).
        const readFeed: ReadFeed = async after => {
          const base = await discovery.getBaseUrl(pluginId);
          const { token } = await auth.getPluginRequestToken({
            onBehalfOf: await auth.getOwnServiceCredentials(),
            targetPluginId: pluginId,
          });
          const url = new URL(`${base}/v1/catalog/changes`);
          url.searchParams.set('limit', '500');
          if (after !== undefined) {
            url.searchParams.set('after', after);
          }
          const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
          if (!res.ok) {
            throw new FeedError(res.status, await messageOf(res));
          }
          return (await res.json()) as FeedAnswer;
        };

        const provider = new PavedEntityProvider(readFeed, logger);
        catalog.addEntityProvider(provider);

        // Local: each catalog replica follows the feed itself (a global task waits for the
        // scheduler's own poll, seconds more); applying the same state twice is harmless.
        await scheduler.scheduleTask({
          id: 'paved-catalog-feed',
          scope: 'local',
          frequency: { seconds: pollSeconds },
          timeout: { minutes: 5 },
          fn: async () => {
            try {
              await provider.run();
            } catch (e) {
              logger.warn(`paved catalog feed: ${e instanceof Error ? e.message : String(e)}`);
            }
          },
        });
        await scheduler.scheduleTask({
          id: 'paved-catalog-full-sync',
          scope: 'local',
          frequency: { minutes: fullSyncMinutes },
          initialDelay: { minutes: fullSyncMinutes },
          timeout: { seconds: 10 },
          fn: async () => provider.requestFullSync(),
        });
      },
    });
  },
});
