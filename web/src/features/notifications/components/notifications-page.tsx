import { useEffect, useId, useState } from 'react';
import { Link } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { toUserFacingError } from '@/lib/problem';

import {
  listNotifications,
  markAllRead,
  notificationLink,
  parseNotification,
  setRead,
  type AppNotification,
  type ReadFilter,
} from '../api/notifications';
import { savedNotifications, saveNotifications } from '../lib/cache';
import { belongsTo, mergeNotifications } from '../lib/list';
import { askSystemPermission, systemPermission, type PermissionState } from '../lib/system-notifications';
import { unread, useUnreadCount } from '../lib/unread';

const FILTERS: { value: ReadFilter; label: string }[] = [
  { value: 'all', label: 'All' },
  { value: 'unread', label: 'Unread' },
  { value: 'read', label: 'Read' },
];

function SystemNotificationsSetting() {
  const [permission, setPermission] = useState<PermissionState>(() => systemPermission());
  if (permission === 'unsupported') return null;
  if (permission === 'granted') {
    return <p className="muted">System notifications are on for ready reports and urgent studies.</p>;
  }
  if (permission === 'denied') {
    return <p className="muted">System notifications are blocked for this site; allow them in the browser&apos;s site settings.</p>;
  }
  return (
    <p>
      <button type="button" className="button" onClick={() => void askSystemPermission().then(setPermission)}>
        Turn on system notifications
      </button>
    </p>
  );
}

/** `userId` keys the copy kept on this device (null: nothing is saved or read back). */
export function NotificationsPage({ userId }: { userId: string | null }) {
  useDocumentTitle('Notifications');
  const network = useNetworkStatus();
  const unreadCount = useUnreadCount();
  const filterId = useId();
  const [filter, setFilter] = useState<ReadFilter>('all');
  const [items, setItems] = useState<AppNotification[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [announcement, setAnnouncement] = useState('');
  // When the list shown is the saved copy: when it was fetched (null: fresh from the gateway).
  const [savedAt, setSavedAt] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    if (userId) {
      void savedNotifications(userId, filter).then((saved) => {
        if (stopped || !saved) return;
        setItems((current) => current ?? saved.items);
        setSavedAt((current) => current ?? saved.fetched_at);
      });
    }
    const load = (): void => {
      if (network === 'offline') return;
      listNotifications(filter, null)
        .then((page) => {
          if (stopped) return;
          setItems(page.items);
          setSavedAt(null);
          setCursor(page.next_cursor);
          setError(null);
        })
        .catch((caught: unknown) => {
          if (!stopped) setError(toUserFacingError(caught).message);
        });
    };
    load();
    // After a reconnection, refetch: the replay covers events, the list may have older changes.
    const offOpen = liveEvents.onOpen(load);
    const offLive = liveEvents.subscribe('notification', (data) => {
      const notification = parseNotification(data);
      if (!notification || !belongsTo(filter, notification)) return;
      setItems((current) => mergeNotifications(current ?? [], [notification]));
      setAnnouncement(`New notification: ${notification.title}`);
    });
    return () => {
      stopped = true;
      offOpen();
      offLive();
    };
  }, [filter, network, userId]);

  // The newest page as last seen (read marks and live arrivals included) reads offline later.
  useEffect(() => {
    if (userId && items && savedAt === null) void saveNotifications(userId, filter, items);
  }, [userId, filter, items, savedAt]);

  const toggle = async (notification: AppNotification): Promise<void> => {
    try {
      const changed = await setRead(notification.id, !notification.read);
      setItems((current) => mergeNotifications(current ?? [], [changed]));
      setError(null);
      // The stream sends the new count too; this keeps the badge right if it is down.
      void unread.refresh();
    } catch (caught) {
      setError(toUserFacingError(caught).message);
    }
  };

  const readAll = async (): Promise<void> => {
    setBusy(true);
    try {
      await markAllRead();
      const now = new Date().toISOString();
      setItems((current) => (current ?? []).map((item) => (item.read ? item : { ...item, read: true, read_at: now })));
      unread.set(0);
      setAnnouncement('All notifications marked as read');
      setError(null);
    } catch (caught) {
      setError(toUserFacingError(caught).message);
    } finally {
      setBusy(false);
    }
  };

  const more = async (): Promise<void> => {
    if (!cursor) return;
    try {
      const page = await listNotifications(filter, cursor);
      setItems((current) => mergeNotifications(current ?? [], page.items));
      setCursor(page.next_cursor);
    } catch (caught) {
      setError(toUserFacingError(caught).message);
    }
  };

  return (
    <section aria-labelledby="notifications-title">
      <h1 id="notifications-title">Notifications</h1>
      <SystemNotificationsSetting />
      <div className="card">
        <div className="toolbar">
          <div className="field field--inline">
            <label htmlFor={filterId}>Show</label>
            <select id={filterId} value={filter} onChange={(event) => {
                setItems(null);
                setSavedAt(null);
                setFilter(event.target.value as ReadFilter);
              }}>
              {FILTERS.map((option) => (
                <option key={option.value} value={option.value}>
                  {option.label}
                </option>
              ))}
            </select>
          </div>
          <button type="button" className="button" onClick={() => void readAll()} disabled={busy || unreadCount === 0 || network === 'offline'}>
            Mark all as read
          </button>
        </div>
        {network === 'offline' ? (
          <Alert tone="info">
            {items === null
              ? 'You are offline and no notifications were saved on this device yet; they arrive when the network is back.'
              : `You are offline — showing saved notifications${savedAt ? ` (as of ${formatDateTime(savedAt)})` : ''}.`}
          </Alert>
        ) : error ? (
          <Alert tone="warning">{error}</Alert>
        ) : null}
        <p className="visually-hidden" role="status" aria-live="polite">
          {announcement}
        </p>
        {items === null && !error && network !== 'offline' ? <p role="status">Loading…</p> : null}
        {items?.length === 0 ? <p>No notifications{filter === 'all' ? ' yet' : ''}.</p> : null}
        {items && items.length > 0 ? (
          <ul className="notification-list" data-testid="notifications">
            {items.map((item) => {
              const link = notificationLink(item);
              return (
                <li key={item.id} className={item.read ? 'notification' : 'notification notification--unread'} data-read={item.read} data-type={item.type}>
                  <div className="notification__text">
                    <p className="notification__title">
                      {item.read ? null : <span className="visually-hidden">Unread: </span>}
                      {link ? <Link to={link}>{item.title}</Link> : item.title}
                    </p>
                    <p>{item.body}</p>
                    <p className="muted">
                      <time dateTime={item.created_at}>{formatDateTime(item.created_at)}</time>
                    </p>
                  </div>
                  <button type="button" className="button button--small" onClick={() => void toggle(item)} disabled={network === 'offline'}>
                    {item.read ? 'Mark as unread' : 'Mark as read'}
                    <span className="visually-hidden">: {item.title}</span>
                  </button>
                </li>
              );
            })}
          </ul>
        ) : null}
        {cursor && network !== 'offline' ? (
          <p>
            <button type="button" className="button" onClick={() => void more()}>
              Show older
            </button>
          </p>
        ) : null}
      </div>
    </section>
  );
}
