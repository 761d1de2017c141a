// The browser test's page: a Resource entity page with paved's card, inside Backstage's own
// app wrapper and API providers, calling a real paved. Backstage's real FetchApi (with the
// identity middleware) and frontend discovery are used as an app configures them; only the
// signed-in user is handed in as a token (no Backstage auth backend runs here).
//   ?entity=<url of the entity JSON>&paved=<paved's origin>&token=<the user's token>
import { createRoot } from 'react-dom/client';
import { ConfigReader } from '@backstage/config';
import { FetchMiddlewares, FrontendHostDiscovery, createFetchApi } from '@backstage/core-app-api';
import type { IdentityApi } from '@backstage/core-plugin-api';
import { EntityProvider } from '@backstage/plugin-catalog-react';
import { TestApiProvider, wrapInTestApp } from '@backstage/test-utils';
import type { Entity } from '@backstage/catalog-model';
import { EntityPavedResourceCard, PavedClient, pavedApiRef } from '../src';

const q = new URLSearchParams(window.location.search);
const pavedOrigin = q.get('paved')!;
const token = q.get('token')!;

// The app's configuration for paved: the frontend's discovery points at paved directly
// (paved lists this page's origin in `server.cors_origins`).
const config = new ConfigReader({
  backend: { baseUrl: window.location.origin },
  discovery: {
    endpoints: [{ target: { external: `${pavedOrigin}/api/{{pluginId}}` }, plugins: ['paved'] }],
  },
});

const signedIn: IdentityApi = {
  getCredentials: async () => ({ token }),
  getBackstageIdentity: async () => ({
    type: 'user',
    userEntityRef: 'user:default/browser-test',
    ownershipEntityRefs: [],
  }),
  getProfileInfo: async () => ({}),
  signOut: async () => {},
};

const discoveryApi = FrontendHostDiscovery.fromConfig(config);
const fetchApi = createFetchApi({
  middleware: [
    FetchMiddlewares.injectIdentityAuth({
      identityApi: signedIn,
      config,
      // The user's token goes to paved's base URL only.
      urlPrefixAllowlist: [`${pavedOrigin}/api/paved`],
    }),
  ],
});

async function main() {
  const entity: Entity = await (await fetch(q.get('entity')!)).json();
  createRoot(document.getElementById('root')!).render(
    wrapInTestApp(
      <TestApiProvider apis={[[pavedApiRef, new PavedClient({ discoveryApi, fetchApi })]]}>
        <EntityProvider entity={entity}>
          <div style={{ maxWidth: 720, padding: 16 }}>
            <h2>{entity.metadata.title ?? entity.metadata.name}</h2>
            <EntityPavedResourceCard />
          </div>
        </EntityProvider>
      </TestApiProvider>,
    ),
  );
}

main();
