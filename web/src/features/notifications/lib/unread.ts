/** The unread count shown in the navigation: fetched once, then kept live by the stream. */
import { useSyncExternalStore } from 'react';

import { liveEvents } from '@/lib/live-events';

import { fetchUnreadCount } from '../api/notifications';

let count: number | null = null;
/** bumped by every change, so a slow REST answer never overwrites a newer count from the stream */
let version = 0;
const listeners = new Set<() => void>();

function set(next: number | null): void {
  version += 1;
  if (next === count) return;
  count = next;
  for (const listener of listeners) listener();
}

export const unread = {
  get: (): number | null => count,
  set,
  subscribe(listener: () => void): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
  async refresh(): Promise<void> {
    const asked = version;
    try {
      const fresh = await fetchUnreadCount();
      if (version === asked) set(fresh);
    } catch {
      // offline or signed out: keep the last known count
    }
  },
};

/** Follow the stream's `unread_count` events (the gateway sends one on every connection). */
export function followUnreadCount(): () => void {
  void unread.refresh();
  const off = liveEvents.subscribe('unread_count', (data) => {
    const value = (data as { count?: unknown } | null)?.count;
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0) set(value);
  });
  return () => {
    off();
    // Signed out: the next user must not see this one's count.
    set(null);
  };
}

export function useUnreadCount(): number | null {
  return useSyncExternalStore(
    (listener) => unread.subscribe(listener),
    () => unread.get(),
  );
}
