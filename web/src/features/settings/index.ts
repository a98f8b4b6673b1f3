// The settings feature's public surface, for the app layer.
export { DataExportPanel } from './components/data-export-panel';
export { ProfilePanel } from './components/profile-panel';
export { SignOutEverywherePanel } from './components/sign-out-everywhere-panel';
export type { Profile } from './api/settings';
