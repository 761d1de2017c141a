import { coreServices, createBackendModule } from '@backstage/backend-plugin-api';
import { scaffolderActionsExtensionPoint } from '@backstage/plugin-scaffolder-node';
import { createEstimateAction, createProvisionAction, createWaitAction } from './actions';

/**
 * The scaffolder module: paved's actions (`estimate`, `provision`, `wait`) in-process (they
 * win over the remote ones of the same id). Config (optional): `paved.pluginId` (default `paved`),
 * `paved.scaffolder.pollMilliseconds` (default 1000).
 */
export const scaffolderModulePaved = createBackendModule({
  pluginId: 'scaffolder',
  moduleId: 'paved',
  register(env) {
    env.registerInit({
      deps: {
        scaffolder: scaffolderActionsExtensionPoint,
        config: coreServices.rootConfig,
        auth: coreServices.auth,
        discovery: coreServices.discovery,
      },
      async init({ scaffolder, config, auth, discovery }) {
        const pluginId = config.getOptionalString('paved.pluginId') ?? 'paved';
        const pollMs = config.getOptionalNumber('paved.scaffolder.pollMilliseconds') ?? 1000;
        const o = { auth, discovery, pluginId, pollMs };
        scaffolder.addActions(createEstimateAction(o), createProvisionAction(o), createWaitAction(o));
      },
    });
  },
});
