import { api } from '@/lib/api-client';

export type NotificationType =
  | 'upload_complete'
  | 'upload_failed'
  | 'report_assigned'
  | 'report_ready'
  | 'additional_data_required'
  | 'stat_study_arrived';

export interface AppNotification {
  id: string;
  /** a NotificationType; kept open so a newer gateway's kinds still show */
  type: string;
  title: string;
  body: string;
  upload_id: string | null;
  report_id: string | null;
  data: Record<string, unknown>;
  read: boolean;
  read_at: string | null;
  created_at: string;
}

export interface NotificationPage {
  items: AppNotification[];
  next_cursor: string | null;
}

export type ReadFilter = 'all' | 'unread' | 'read';

export async function listNotifications(filter: ReadFilter, cursor: string | null, limit = 20): Promise<NotificationPage> {
  const params: Record<string, string | number | boolean> = { limit };
  if (filter !== 'all') params.unread = filter === 'unread';
  if (cursor) params.cursor = cursor;
  return (await api.get<NotificationPage>('/notifications', { params })).data;
}

export async function setRead(id: string, read: boolean): Promise<AppNotification> {
  return (await api.patch<AppNotification>(`/notifications/${encodeURIComponent(id)}`, { read })).data;
}

export async function markAllRead(): Promise<number> {
  return (await api.post<{ marked_read: number }>('/notifications/read-all')).data.marked_read;
}

export async function fetchUnreadCount(): Promise<number> {
  return (await api.get<{ count: number }>('/notifications/unread-count')).data.count;
}

/** Where a notification leads in the app. */
export function notificationLink(notification: Pick<AppNotification, 'report_id' | 'upload_id'>): string | null {
  if (notification.report_id) return `/reports/${notification.report_id}`;
  if (notification.upload_id) return `/uploads/${notification.upload_id}`;
  return null;
}

/** A live `notification` event's data, checked before use. */
export function parseNotification(data: unknown): AppNotification | null {
  if (typeof data !== 'object' || data === null) return null;
  const value = data as Record<string, unknown>;
  if (typeof value.id !== 'string' || typeof value.type !== 'string' || typeof value.title !== 'string') return null;
  return {
    id: value.id,
    type: value.type,
    title: value.title,
    body: typeof value.body === 'string' ? value.body : '',
    upload_id: typeof value.upload_id === 'string' ? value.upload_id : null,
    report_id: typeof value.report_id === 'string' ? value.report_id : null,
    data: typeof value.data === 'object' && value.data !== null ? (value.data as Record<string, unknown>) : {},
    read: value.read === true,
    read_at: typeof value.read_at === 'string' ? value.read_at : null,
    created_at: typeof value.created_at === 'string' ? value.created_at : new Date().toISOString(),
  };
}
