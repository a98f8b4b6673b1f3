/**
 * Notifications outside the page (the Notification API): a report became ready, and, for a
 * radiologist, a STAT study arrived. Permission is asked only from a click (browsers ignore or
 * penalise a request made on load).
 */
import type { AppNotification } from '../api/notifications';

/** A replayed notification older than this is old news: no pop-up for it. */
export const SYSTEM_NOTIFICATION_MAX_AGE_MS = 10 * 60 * 1000;

export function wantsSystemNotification(
  notification: Pick<AppNotification, 'type' | 'read' | 'created_at'>,
  role: string | null,
  now: number,
): boolean {
  if (notification.read) return false;
  const created = Date.parse(notification.created_at);
  if (Number.isFinite(created) && now - created > SYSTEM_NOTIFICATION_MAX_AGE_MS) return false;
  if (notification.type === 'report_ready') return true;
  return notification.type === 'stat_study_arrived' && role === 'radiologist';
}

export type PermissionState = NotificationPermission | 'unsupported';

export function systemPermission(): PermissionState {
  return typeof Notification === 'undefined' ? 'unsupported' : Notification.permission;
}

export async function askSystemPermission(): Promise<PermissionState> {
  if (typeof Notification === 'undefined') return 'unsupported';
  return Notification.requestPermission();
}

/** Shows `notification` if allowed; a click focuses the app and opens `link`. */
export async function showSystemNotification(notification: AppNotification, link: string | null, open: (path: string) => void): Promise<void> {
  if (systemPermission() !== 'granted') return;
  const options: NotificationOptions = { body: notification.body, tag: notification.id, icon: '/icons/icon-192.png', data: { url: link ?? '/notifications' } };
  try {
    const shown = new Notification(notification.title, options);
    shown.onclick = () => {
      window.focus();
      if (link) open(link);
      shown.close();
    };
  } catch {
    // Android Chrome allows notifications only through the service worker.
    try {
      const registration = await navigator.serviceWorker.ready;
      await registration.showNotification(notification.title, options);
    } catch {
      // not possible here: the in-app badge still tells
    }
  }
}
