// The dashboard feature's public surface, for the app layer.
export { DashboardPage } from './components/dashboard-page';
