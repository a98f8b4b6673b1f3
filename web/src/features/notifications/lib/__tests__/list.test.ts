import { describe, expect, it } from 'vitest';

import type { AppNotification } from '../../api/notifications';
import { belongsTo, mergeNotifications } from '../list';

function note(id: string, created_at: string, read = false): AppNotification {
  return { id, type: 'report_ready', title: id, body: '', upload_id: null, report_id: null, data: {}, read, read_at: null, created_at };
}

describe('mergeNotifications', () => {
  it('puts a live one first and keeps each id once, with the newer copy', () => {
    const page = [note('b', '2026-11-29T10:00:00Z'), note('a', '2026-11-29T09:00:00Z')];
    const merged = mergeNotifications(page, [note('c', '2026-11-29T11:00:00Z'), note('b', '2026-11-29T10:00:00Z', true)]);
    expect(merged.map((n) => n.id)).toEqual(['c', 'b', 'a']);
    expect(merged[1]!.read).toBe(true);
  });
});

describe('belongsTo', () => {
  it('follows the filter', () => {
    expect(belongsTo('all', { read: true })).toBe(true);
    expect(belongsTo('unread', { read: false })).toBe(true);
    expect(belongsTo('unread', { read: true })).toBe(false);
    expect(belongsTo('read', { read: false })).toBe(false);
  });
});
