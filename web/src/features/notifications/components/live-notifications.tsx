import { useEffect } from 'react';
import { useNavigate } from 'react-router';

import { liveEvents, startLiveEvents } from '@/lib/live-events';

import { notificationLink, parseNotification } from '../api/notifications';
import { showSystemNotification, wantsSystemNotification } from '../lib/system-notifications';
import { followUnreadCount } from '../lib/unread';

/**
 * Mounted once by the signed-in shell: keeps the live stream open, the unread count current and
 * turns a ready report (and, for radiologists, a STAT arrival) into a system notification.
 */
export function LiveNotifications({ role }: { role: string | null }) {
  const navigate = useNavigate();
  useEffect(() => startLiveEvents(), []);
  useEffect(() => followUnreadCount(), []);
  useEffect(
    () =>
      liveEvents.subscribe('notification', (data) => {
        const notification = parseNotification(data);
        if (!notification || !wantsSystemNotification(notification, role, Date.now())) return;
        void showSystemNotification(notification, notificationLink(notification), (path) => void navigate(path));
      }),
    [role, navigate],
  );
  return null;
}
