import type { Entity } from '@backstage/catalog-model';
import type {
  EntityProvider,
  EntityProviderConnection,
} from '@backstage/plugin-catalog-node';

/** One answer of paved's catalog feed (`GET /api/paved/v1/catalog/changes`). */
export interface FeedAnswer {
  entities: Entity[];
  removed: string[];
  cursor: string;
  more: boolean;
  templates: string;
}

/** Reads one answer: after a cursor, or from the start when `after` is undefined. */
export type ReadFeed = (after: string | undefined) => Promise<FeedAnswer>;

/** paved answered with an error status (`status`), its message in `message`. */
export class FeedError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'FeedError';
  }
}

interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

/** Every entity of this provider has this location key, so no other source can take them. */
export const LOCATION_KEY = 'paved-provider';

const refOf = (e: Entity) =>
  `${e.kind}:${e.metadata.namespace ?? 'default'}/${e.metadata.name}`.toLocaleLowerCase('en-US');

/**
 * paved's Resources and Templates, from paved's change feed: a full mutation on the first run
 * (and whenever paved's offerings change or a full sync is asked for), then delta mutations
 * from the cursor. All decisions are paved's: this only translates answers into mutations.
 * Nothing is applied from a read that failed, so a failure only delays (the next run starts
 * from the same cursor).
 */
export class PavedEntityProvider implements EntityProvider {
  private connection?: EntityProviderConnection;
  private cursor?: string;
  private templates?: string;
  private fullSyncDue = true;

  constructor(
    private readonly readFeed: ReadFeed,
    private readonly logger: Logger,
  ) {}

  getProviderName(): string {
    return 'paved';
  }

  async connect(connection: EntityProviderConnection): Promise<void> {
    this.connection = connection;
  }

  /** The next run reads everything again (e.g. on a schedule, to heal anything missed). */
  requestFullSync(): void {
    this.fullSyncDue = true;
  }

  /** One round: a full sync when due, else the changes since the cursor. */
  async run(): Promise<void> {
    if (!this.connection) {
      throw new Error('paved entity provider: run before the catalog connected it');
    }
    if (this.fullSyncDue || this.cursor === undefined) {
      await this.fullSync(this.connection);
      return;
    }
    let answers;
    try {
      answers = await this.readAll(this.cursor);
    } catch (e) {
      // paved refuses a cursor it does not know (e.g. its database was replaced): start over.
      if (e instanceof FeedError && e.status === 400) {
        this.logger.warn(`paved refused the catalog cursor (${e.message}); reading everything again`);
        this.fullSyncDue = true;
      }
      throw e;
    }
    if (answers.templates !== this.templates) {
      // Templates are listed on a read from the start only.
      await this.fullSync(this.connection);
      return;
    }
    const { added, removed } = answers;
    if (added.size > 0 || removed.size > 0) {
      await this.connection.applyMutation({
        type: 'delta',
        added: [...added.values()].map(entity => ({ entity, locationKey: LOCATION_KEY })),
        removed: [...removed].map(entityRef => ({ entityRef, locationKey: LOCATION_KEY })),
      });
      this.logger.info(
        `paved: ${added.size} entities added or changed, ${removed.size} removed`,
      );
    }
    this.cursor = answers.cursor;
  }

  private async fullSync(connection: EntityProviderConnection): Promise<void> {
    const all = await this.readAll(undefined);
    await connection.applyMutation({
      type: 'full',
      entities: [...all.added.values()].map(entity => ({ entity, locationKey: LOCATION_KEY })),
    });
    this.cursor = all.cursor;
    this.templates = all.templates;
    this.fullSyncDue = false;
    this.logger.info(`paved: full sync, ${all.added.size} entities`);
  }

  /** Reads while paved says more follow; the latest state of each entity wins. */
  private async readAll(after: string | undefined) {
    const added = new Map<string, Entity>();
    const removed = new Set<string>();
    let cursor = after;
    let templates = '';
    let first = true;
    for (;;) {
      const a = await this.readFeed(first ? after : cursor);
      first = false;
      for (const e of a.entities) {
        const ref = refOf(e);
        removed.delete(ref);
        added.set(ref, e);
      }
      for (const r of a.removed) {
        const ref = r.toLocaleLowerCase('en-US');
        added.delete(ref);
        removed.add(ref);
      }
      cursor = a.cursor;
      templates = a.templates;
      if (!a.more) {
        return { added, removed, cursor, templates };
      }
    }
  }
}
