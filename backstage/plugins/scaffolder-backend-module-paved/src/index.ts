/**
 * paved's scaffolder module for Backstage: `backend.add(import('@paved/plugin-scaffolder-backend-module-paved'))`.
 *
 * @packageDocumentation
 */
export { scaffolderModulePaved as default } from './module';
export { createProvisionAction } from './actions';
export { follow } from './follow';
export { PavedError, pavedCall } from './client';
