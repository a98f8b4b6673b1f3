import { useUnreadCount } from '../lib/unread';

/** The unread count beside the navigation's Notifications link (nothing when there are none). */
export function UnreadBadge() {
  const count = useUnreadCount();
  if (!count) return null;
  return (
    <span className="nav-badge" data-testid="unread-badge" data-count={count}>
      <span aria-hidden="true">{count > 99 ? '99+' : count}</span>
      <span className="visually-hidden">, {count} unread</span>
    </span>
  );
}
