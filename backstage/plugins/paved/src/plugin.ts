import {
  createApiFactory,
  createComponentExtension,
  createPlugin,
  discoveryApiRef,
  fetchApiRef,
  createRoutableExtension,
  createRouteRef,
} from '@backstage/core-plugin-api';
import { PavedClient, pavedApiRef } from './api';
import { PavedGroupCard } from './components/GroupCard';
import { PavedResourceCard, PavedResourceContent } from './components/ResourceCard';

export const rootRouteRef = createRouteRef({ id: 'paved' });

export const pavedPlugin = createPlugin({
  id: 'paved',
  apis: [
    createApiFactory({
      api: pavedApiRef,
      deps: { discoveryApi: discoveryApiRef, fetchApi: fetchApiRef },
      factory: ({ discoveryApi, fetchApi }) => new PavedClient({ discoveryApi, fetchApi }),
    }),
  ],
  routes: { root: rootRouteRef },
});

/** For a Resource entity page's overview: `<EntityPavedResourceCard />`. */
export const EntityPavedResourceCard = pavedPlugin.provide(
  createComponentExtension({
    name: 'EntityPavedResourceCard',
    component: { sync: PavedResourceCard },
  }),
);

/** For a Resource entity page's tab: `<EntityLayout.Route path="/paved" title="paved"><EntityPavedResourceContent /></EntityLayout.Route>`. */
export const EntityPavedResourceContent = pavedPlugin.provide(
  createRoutableExtension({
    name: 'EntityPavedResourceContent',
    component: () => Promise.resolve(PavedResourceContent),
    mountPoint: rootRouteRef,
  }),
);

/** For a Group entity page: `<EntityPavedGroupCard />`. */
export const EntityPavedGroupCard = pavedPlugin.provide(
  createComponentExtension({
    name: 'EntityPavedGroupCard',
    component: { sync: PavedGroupCard },
  }),
);
