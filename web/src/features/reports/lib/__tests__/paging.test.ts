import { describe, expect, it } from 'vitest';

import { hasNext, hasPrevious, offsetOfPage, pageOfOffset, previousOffset } from '@/lib/paging';

import { listKey, REPORTS_PAGE_SIZE } from '../../api/reports';
import { cachedReport, ReportsDatabase } from '../cache';

describe('paging the reports list', () => {
  it('keeps the page in the URL: ?page=N and the offset map both ways', () => {
    expect(REPORTS_PAGE_SIZE).toBeLessThanOrEqual(100); // the API's largest limit
    for (const offset of [0, REPORTS_PAGE_SIZE, 3 * REPORTS_PAGE_SIZE]) {
      expect(offsetOfPage(String(pageOfOffset(offset, REPORTS_PAGE_SIZE)), REPORTS_PAGE_SIZE)).toBe(offset);
    }
    expect(offsetOfPage(null, REPORTS_PAGE_SIZE)).toBe(0);
    expect(offsetOfPage('junk', REPORTS_PAGE_SIZE)).toBe(0);
  });

  it('offers Older while reports remain and Newer after the first page', () => {
    // 120 reports: pages of 50, 50, 20.
    expect(hasPrevious(0)).toBe(false);
    expect(hasNext(0, 50, 120)).toBe(true);
    expect(hasNext(100, 20, 120)).toBe(false);
    expect(previousOffset(100, REPORTS_PAGE_SIZE)).toBe(50);
  });

  it('keeps each page of each filter apart on the device, page 1 where it always was', async () => {
    expect(listKey(null, 0)).toBe('');
    expect(listKey('ready', 0)).toBe('ready');
    const keys = new Set([listKey(null, 0), listKey(null, 50), listKey('ready', 0), listKey('ready', 50)]);
    expect(keys.size).toBe(4);

    // A report seen only on page 2 still opens offline from its list row.
    const db = new ReportsDatabase(`reports-paging-${Math.random()}`);
    const row = { id: 'old', status: 'ready' } as unknown as Parameters<typeof db.lists.put>[0]['items'][number];
    await db.lists.put({ key: listKey(null, 50), items: [row], total: 51, fetched_at: '2026-11-29T10:06:00Z' });
    expect(await cachedReport('old', db)).toEqual({ report: row, full: false });
  });
});
