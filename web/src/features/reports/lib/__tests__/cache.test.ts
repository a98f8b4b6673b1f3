import { describe, expect, it } from 'vitest';

import type { Report, ReportSummary } from '../../api/types';
import { cachedReport, clearReportCache, ReportsDatabase } from '../cache';

function summary(id: string): ReportSummary {
  return {
    id,
    upload_id: `u-${id}`,
    owner_id: 'o1',
    status: 'ready',
    study: {
      patient_name: 'DOE^JANE',
      patient_id: null,
      study_date: '2026-01-02',
      modality: 'CT',
      service_level: 'routine',
      study_description: 'CT head',
      study_instance_uid: null,
    },
    uploaded_at: '2026-11-29T10:00:00Z',
    delivered_at: '2026-11-29T10:01:00Z',
    radiologist: 'Dr Who',
    updated_at: '2026-11-29T10:05:00Z',
    ready_at: '2026-11-29T10:05:00Z',
  };
}

describe('the offline report cache', () => {
  it('gives the full report when it was opened, else the row of a cached list, else nothing', async () => {
    const db = new ReportsDatabase(`reports-test-${Math.random()}`);
    const full: Report = { ...summary('a'), text: 'Normal.', message: null, source: 'manual', has_pacs_pdf: false, last_synced_at: null, sync_error: null };
    await db.reports.put({ id: 'a', report: full, fetched_at: '2026-11-29T10:06:00Z' });
    await db.lists.put({ key: 'ready', items: [summary('a'), summary('b')], total: 2, fetched_at: '2026-11-29T10:06:00Z' });

    expect(await cachedReport('a', db)).toEqual({ report: full, full: true });
    expect(await cachedReport('b', db)).toEqual({ report: summary('b'), full: false });
    expect(await cachedReport('c', db)).toBeNull();

    // Signing out leaves no patient data behind.
    await clearReportCache(db);
    expect(await cachedReport('a', db)).toBeNull();
    expect(await db.lists.count()).toBe(0);
  });
});
