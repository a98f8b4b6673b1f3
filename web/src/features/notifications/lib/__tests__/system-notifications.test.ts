import { describe, expect, it } from 'vitest';

import { SYSTEM_NOTIFICATION_MAX_AGE_MS, wantsSystemNotification } from '../system-notifications';

const now = Date.parse('2026-11-29T12:00:00Z');
const fresh = new Date(now - 5_000).toISOString();

describe('wantsSystemNotification', () => {
  it('pops up a ready report for anyone', () => {
    expect(wantsSystemNotification({ type: 'report_ready', read: false, created_at: fresh }, 'clinician', now)).toBe(true);
  });

  it('pops up a STAT arrival for radiologists only', () => {
    const stat = { type: 'stat_study_arrived', read: false, created_at: fresh };
    expect(wantsSystemNotification(stat, 'radiologist', now)).toBe(true);
    expect(wantsSystemNotification(stat, 'clinician', now)).toBe(false);
    expect(wantsSystemNotification(stat, null, now)).toBe(false);
  });

  it('keeps quiet for other kinds, read ones and old replayed ones', () => {
    expect(wantsSystemNotification({ type: 'upload_complete', read: false, created_at: fresh }, 'clinician', now)).toBe(false);
    expect(wantsSystemNotification({ type: 'report_ready', read: true, created_at: fresh }, 'clinician', now)).toBe(false);
    const old = new Date(now - SYSTEM_NOTIFICATION_MAX_AGE_MS - 1).toISOString();
    expect(wantsSystemNotification({ type: 'report_ready', read: false, created_at: old }, 'clinician', now)).toBe(false);
  });
});
