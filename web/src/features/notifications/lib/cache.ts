/**
 * The newest page of notifications (per user and read filter), kept in IndexedDB so the page reads
 * offline, like the reports list. Patient data in titles: cleared on sign-out and when another
 * user signs in; keyed by user as well, so one user never reads another's.
 */
import Dexie, { type Table } from 'dexie';

import type { AppNotification, ReadFilter } from '../api/notifications';

/** As many as the first page asks for: the newest page only, not everything scrolled through. */
export const CACHED_PAGE_SIZE = 20;

export interface CachedNotifications {
  /** `${user_id}|${filter}` */
  key: string;
  user_id: string;
  items: AppNotification[];
  fetched_at: string;
}

export class NotificationsDatabase extends Dexie {
  pages!: Table<CachedNotifications, string>;

  constructor(name = 'relaypacs-notifications') {
    super(name);
    this.version(1).stores({ pages: 'key, user_id' });
  }
}

export const notificationsDb = new NotificationsDatabase();

function keyOf(userId: string, filter: ReadFilter): string {
  return `${userId}|${filter}`;
}

export async function saveNotifications(
  userId: string,
  filter: ReadFilter,
  items: readonly AppNotification[],
  fetchedAt: string = new Date().toISOString(),
  db: NotificationsDatabase = notificationsDb,
): Promise<void> {
  await db.pages.put({ key: keyOf(userId, filter), user_id: userId, items: items.slice(0, CACHED_PAGE_SIZE), fetched_at: fetchedAt });
}

export async function savedNotifications(
  userId: string,
  filter: ReadFilter,
  db: NotificationsDatabase = notificationsDb,
): Promise<{ items: AppNotification[]; fetched_at: string } | null> {
  const entry = await db.pages.get(keyOf(userId, filter));
  return entry && entry.user_id === userId ? { items: entry.items, fetched_at: entry.fetched_at } : null;
}

export async function clearNotificationCache(db: NotificationsDatabase = notificationsDb): Promise<void> {
  await db.pages.clear();
}
