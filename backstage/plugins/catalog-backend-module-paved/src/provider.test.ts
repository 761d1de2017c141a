// The provider's translation of feed answers into catalog mutations, against a scripted feed
// (a fake of paved's endpoint: its real behaviour is tested in paved's tests/it/catalog_feed.rs
// and end to end in tests/it/backstage_modules.rs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Entity } from '@backstage/catalog-model';
import type { EntityProviderMutation } from '@backstage/plugin-catalog-node';
import { FeedAnswer, FeedError, LOCATION_KEY, PavedEntityProvider } from './provider';

const resource = (name: string, status = 'ready'): Entity => ({
  apiVersion: 'backstage.io/v1alpha1',
  kind: 'Resource',
  metadata: { name, annotations: { 'paved.dev/status': status } },
  spec: { type: 'database', owner: 'group:default/team-a' },
});

/** A fake feed: answers by cursor (`''` for a read from the start); records what was asked. */
function fakeFeed(answers: Record<string, FeedAnswer | Error>) {
  const asked: (string | undefined)[] = [];
  const read = async (after: string | undefined) => {
    asked.push(after);
    const a = answers[after ?? ''];
    if (a instanceof Error) throw a;
    if (!a) throw new Error(`fake feed: no answer after ${after}`);
    return a;
  };
  return { read, asked };
}

function connected(provider: PavedEntityProvider) {
  const mutations: EntityProviderMutation[] = [];
  void provider.connect({
    applyMutation: async m => {
      mutations.push(m);
    },
    refresh: async () => {},
  });
  return mutations;
}

const quiet = { info() {}, warn() {} };
const answer = (a: Partial<FeedAnswer>): FeedAnswer => ({
  entities: [],
  removed: [],
  cursor: 'c0',
  more: false,
  templates: 't1',
  ...a,
});

test('the first run is one full mutation over every page; later runs are deltas from the cursor', async () => {
  const feed = fakeFeed({
    '': answer({ entities: [resource('a')], cursor: 'c1', more: true }),
    c1: answer({ entities: [resource('b')], cursor: 'c2' }),
    c2: answer({ entities: [resource('a', 'updating')], removed: ['resource:default/b'], cursor: 'c3' }),
    c3: answer({ cursor: 'c3' }),
  });
  const provider = new PavedEntityProvider(feed.read, quiet);
  const mutations = connected(provider);

  await provider.run();
  assert.equal(mutations.length, 1);
  const full = mutations[0];
  assert.equal(full.type, 'full');
  assert.deepEqual(
    full.type === 'full' && full.entities.map(e => [e.entity.metadata.name, e.locationKey]),
    [['a', LOCATION_KEY], ['b', LOCATION_KEY]],
  );

  await provider.run();
  const delta = mutations[1];
  assert.equal(delta.type, 'delta');
  if (delta.type === 'delta') {
    assert.deepEqual(delta.added.map(e => e.entity.metadata.annotations?.['paved.dev/status']), ['updating']);
    assert.deepEqual(delta.removed, [{ entityRef: 'resource:default/b', locationKey: LOCATION_KEY }]);
  }

  await provider.run();
  assert.equal(mutations.length, 2, 'nothing changed: no mutation');
  assert.deepEqual(feed.asked, [undefined, 'c1', 'c2', 'c3']);
});

test('an entity added then removed within one round is only removed', async () => {
  const feed = fakeFeed({
    '': answer({ cursor: 'c1' }),
    c1: answer({ entities: [resource('x')], cursor: 'c2', more: true }),
    c2: answer({ removed: ['Resource:default/X'], cursor: 'c3' }),
  });
  const provider = new PavedEntityProvider(feed.read, quiet);
  const mutations = connected(provider);
  await provider.run();
  await provider.run();
  const delta = mutations[1];
  assert.ok(delta.type === 'delta');
  assert.deepEqual(delta.added, []);
  assert.deepEqual(delta.removed.map(r => 'entityRef' in r && r.entityRef), ['resource:default/x']);
});

test('a failed read applies nothing and the next run retries the same cursor', async () => {
  const answers: Record<string, FeedAnswer | Error> = {
    '': answer({ cursor: 'c1' }),
    c1: new Error('connection refused'),
  };
  const feed = fakeFeed(answers);
  const provider = new PavedEntityProvider(feed.read, quiet);
  const mutations = connected(provider);
  await provider.run();
  await assert.rejects(provider.run(), /connection refused/);
  answers.c1 = answer({ entities: [resource('late')], cursor: 'c2' });
  await provider.run();
  assert.equal(mutations.length, 2);
  assert.deepEqual(feed.asked, [undefined, 'c1', 'c1']);
});

test('a refused cursor or new Templates start over with a full mutation', async () => {
  const answers: Record<string, FeedAnswer | Error> = {
    '': answer({ cursor: 'c1' }),
    c1: new FeedError(400, 'after: is not a cursor of the catalog feed'),
  };
  const feed = fakeFeed(answers);
  const provider = new PavedEntityProvider(feed.read, quiet);
  const mutations = connected(provider);
  await provider.run();
  await assert.rejects(provider.run(), FeedError);
  await provider.run();
  assert.deepEqual(mutations.map(m => m.type), ['full', 'full']);

  answers.c1 = answer({ cursor: 'c1', templates: 't2' });
  await provider.run();
  assert.deepEqual(mutations.map(m => m.type), ['full', 'full', 'full'], 'new offerings: read all');
});
