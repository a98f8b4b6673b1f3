/**
 * The last reports list (per status filter) and every report opened, kept in IndexedDB so they
 * read offline. Patient data: cleared on sign-out and when another user signs in.
 */
import Dexie, { type Table } from 'dexie';

import type { Report, ReportSummary } from '../api/types';

export interface CachedList {
  /** the status filter ('' for all) */
  key: string;
  items: ReportSummary[];
  total: number;
  fetched_at: string;
}

export interface CachedReport {
  id: string;
  report: Report;
  fetched_at: string;
}

export class ReportsDatabase extends Dexie {
  lists!: Table<CachedList, string>;
  reports!: Table<CachedReport, string>;

  constructor(name = 'relaypacs-reports') {
    super(name);
    this.version(1).stores({ lists: 'key', reports: 'id' });
  }
}

export const reportsDb = new ReportsDatabase();

export async function clearReportCache(db: ReportsDatabase = reportsDb): Promise<void> {
  await db.transaction('rw', db.lists, db.reports, async () => {
    await db.lists.clear();
    await db.reports.clear();
  });
}

/** A report as far as this device knows it: the full one if it was opened, else its list row. */
export async function cachedReport(id: string, db: ReportsDatabase = reportsDb): Promise<{ report: Report | ReportSummary; full: boolean } | null> {
  const full = await db.reports.get(id);
  if (full) return { report: full.report, full: true };
  for (const list of await db.lists.toArray()) {
    const row = list.items.find((item) => item.id === id);
    if (row) return { report: row, full: false };
  }
  return null;
}
