// The admin feature's public surface, for the app layer.
export { AdminArea, type AdminViewer } from './components/admin-area';
export { AuditPage } from './components/audit-page';
export { DeliveriesPage } from './components/deliveries-page';
export { UsersPage } from './components/users-page';
