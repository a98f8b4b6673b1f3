// The notifications feature's public surface, for the app layer.
export { LiveNotifications } from './components/live-notifications';
export { NotificationsPage } from './components/notifications-page';
export { clearNotificationCache } from './lib/cache';
export { UnreadBadge } from './components/unread-badge';
