export {
  pavedPlugin,
  EntityPavedResourceCard,
  EntityPavedResourceContent,
  EntityPavedGroupCard,
} from './plugin';
export {
  PavedClient,
  PavedError,
  pavedApiRef,
  PAVED_RESOURCE_ID,
  type PavedApi,
  type PavedCredentials,
  type PavedResource,
} from './api';
export { PavedCostInsightsClient, type CostInsightsApi } from './costInsights';
export { PavedResourceCard, PavedResourceContent } from './components/ResourceCard';
export { PavedGroupCard } from './components/GroupCard';
