/**
 * paved's catalog module for Backstage: `backend.add(import('@paved/plugin-catalog-backend-module-paved'))`.
 *
 * @packageDocumentation
 */
export { catalogModulePaved as default } from './module';
export { PavedEntityProvider, FeedError, LOCATION_KEY } from './provider';
export type { FeedAnswer, ReadFeed } from './provider';
