import type { AppNotification, ReadFilter } from '../api/notifications';

/** Newest first, each notification once (a live event may repeat one already fetched). */
export function mergeNotifications(current: readonly AppNotification[], incoming: readonly AppNotification[]): AppNotification[] {
  const byId = new Map<string, AppNotification>();
  for (const item of current) byId.set(item.id, item);
  for (const item of incoming) byId.set(item.id, item);
  return [...byId.values()].sort((a, b) => (a.created_at === b.created_at ? b.id.localeCompare(a.id) : b.created_at.localeCompare(a.created_at)));
}

/** Whether a notification that arrives live belongs in the list being shown. */
export function belongsTo(filter: ReadFilter, notification: Pick<AppNotification, 'read'>): boolean {
  if (filter === 'all') return true;
  return filter === 'unread' ? !notification.read : notification.read;
}
