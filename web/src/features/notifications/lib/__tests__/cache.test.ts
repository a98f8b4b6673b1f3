import { describe, expect, it } from 'vitest';

import type { AppNotification } from '../../api/notifications';
import { CACHED_PAGE_SIZE, clearNotificationCache, NotificationsDatabase, savedNotifications, saveNotifications } from '../cache';

function notification(n: number): AppNotification {
  return {
    id: `n${n}`,
    type: 'report_ready',
    title: `Report ready ${n}`,
    body: 'CT head',
    upload_id: null,
    report_id: `r${n}`,
    data: {},
    read: false,
    read_at: null,
    created_at: new Date(Date.UTC(2026, 10, 29, 10, 0, n)).toISOString(),
  };
}

describe('the offline notifications cache', () => {
  it('keeps the newest page per user and filter, and nothing after sign-out', async () => {
    const db = new NotificationsDatabase(`notifications-test-${Math.random()}`);
    const many = Array.from({ length: CACHED_PAGE_SIZE + 5 }, (_, n) => notification(n));
    await saveNotifications('alice', 'all', many, '2026-11-29T10:06:00Z', db);
    await saveNotifications('alice', 'unread', [notification(1)], '2026-11-29T10:07:00Z', db);

    expect(await savedNotifications('alice', 'all', db)).toEqual({ items: many.slice(0, CACHED_PAGE_SIZE), fetched_at: '2026-11-29T10:06:00Z' });
    expect((await savedNotifications('alice', 'unread', db))?.items).toEqual([notification(1)]);
    expect(await savedNotifications('alice', 'read', db)).toBeNull();
    // Another user on the same device reads nothing of Alice's.
    expect(await savedNotifications('bob', 'all', db)).toBeNull();

    await clearNotificationCache(db);
    expect(await savedNotifications('alice', 'all', db)).toBeNull();
    expect(await db.pages.count()).toBe(0);
  });
});
