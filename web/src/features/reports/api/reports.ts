import { isAxiosError } from 'axios';

import { api } from '@/lib/api-client';

import { reportsDb } from '../lib/cache';

import type { Report, ReportStatus, ReportSummary, ReportUpdate } from './types';

export interface ReportList {
  items: ReportSummary[];
  total: number;
  offset: number;
}

/** Reports shown per page of the list. */
export const REPORTS_PAGE_SIZE = 50;

/** Where one page of one status filter is kept on the device ('' is page 1 of all). */
export function listKey(status: ReportStatus | null, offset: number): string {
  const filter = status ?? '';
  return offset > 0 ? `${filter}@${offset}` : filter;
}

/** One page of reports, newest first (of one status, or all); kept on the device so it reads offline. */
export async function listReports(status: ReportStatus | null, offset = 0, limit = REPORTS_PAGE_SIZE): Promise<ReportList> {
  const params: Record<string, string | number> = { limit, offset };
  if (status) params.status = status;
  const page = (await api.get<ReportList>('/reports', { params })).data;
  await reportsDb.lists.put({ key: listKey(status, offset), items: page.items, total: page.total, fetched_at: new Date().toISOString() });
  return { items: page.items, total: page.total, offset };
}

export async function cachedList(status: ReportStatus | null, offset = 0): Promise<(ReportList & { fetched_at: string }) | null> {
  const entry = await reportsDb.lists.get(listKey(status, offset));
  return entry ? { items: entry.items, total: entry.total, offset, fetched_at: entry.fetched_at } : null;
}

async function remember(report: Report): Promise<Report> {
  await reportsDb.reports.put({ id: report.id, report, fetched_at: new Date().toISOString() });
  // Keep the cached list rows in step with what was just seen.
  await reportsDb.transaction('rw', reportsDb.lists, async () => {
    for (const list of await reportsDb.lists.toArray()) {
      const index = list.items.findIndex((item) => item.id === report.id);
      if (index < 0) continue;
      const items = [...list.items];
      const { text: _text, message: _message, source: _source, has_pacs_pdf: _pdf, last_synced_at: _synced, sync_error: _error, ...summary } = report;
      items[index] = summary;
      await reportsDb.lists.put({ ...list, items });
    }
  });
  return report;
}

export async function getReport(id: string): Promise<Report> {
  return remember((await api.get<Report>(`/reports/${encodeURIComponent(id)}`)).data);
}

export async function updateReport(id: string, update: ReportUpdate): Promise<Report> {
  return remember((await api.patch<Report>(`/reports/${encodeURIComponent(id)}`, update)).data);
}

export async function syncReport(id: string): Promise<Report> {
  return remember((await api.post<Report>(`/reports/${encodeURIComponent(id)}/sync`)).data);
}

/** Fetches the PDF (with the bearer token, so not a plain link) and saves it. */
export async function downloadReportPdf(id: string): Promise<void> {
  let response;
  try {
    response = await api.get<Blob>(`/reports/${encodeURIComponent(id)}/pdf`, { responseType: 'blob' });
  } catch (error) {
    // A problem+json answer arrives as a Blob here: read it so the message can be shown.
    if (isAxiosError(error) && error.response?.data instanceof Blob) {
      try {
        error.response.data = JSON.parse(await error.response.data.text()) as unknown;
      } catch {
        // not JSON: the status alone will do
      }
    }
    throw error;
  }
  const url = URL.createObjectURL(response.data);
  try {
    const anchor = document.createElement('a');
    anchor.href = url;
    anchor.download = `report-${id}.pdf`;
    anchor.rel = 'noopener';
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
  } finally {
    // Give the browser a moment to start the download before the URL goes.
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
  }
}
