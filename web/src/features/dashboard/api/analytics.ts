import { api } from '@/lib/api-client';

import { AnswerCache } from '../lib/answer-cache';
import { toQuery, type DashboardFilters, type Period } from '../lib/period';

export type ServiceLevel = 'stat' | 'emergency' | 'routine';

export interface Durations {
  count: number;
  median_seconds: number | null;
  p95_seconds: number | null;
}

export interface Summary {
  scope: { period: Period; since: string | null; until: string; user_id: string | null };
  uploads: { count: number; bytes: number; gigabytes: number };
  outcomes: Record<string, number>;
  finished: number;
  /** delivered ÷ finished, 0..1; null when nothing finished */
  success_rate: number | null;
  modalities: { modality: string; count: number; bytes: number }[];
  service_levels: { service_level: ServiceLevel; count: number; delivered: number; time_to_pacs: Durations }[];
  time_to_pacs: Durations;
}

export interface TrendDay {
  date: string;
  uploads: number;
  bytes: number;
  delivered: number;
  failed: number;
  modalities: Record<string, number>;
}

export interface Trends {
  days: TrendDay[];
}

export interface UserChoice {
  id: string;
  username: string;
}

/**
 * The gateway computes figures at most every 30 s per question and allows a user 10 analytics
 * reads a minute: an answer is used as it is for 2 minutes, and shown at once (while a fresh one
 * is asked for) for 15, so flicking between periods does not spend that budget.
 */
const FRESH_MS = 2 * 60_000;
const KEEP_MS = 15 * 60_000;
const answers = new AnswerCache(FRESH_MS, KEEP_MS);

/**
 * `viewer`: whose figures these are (another person may sign in on the device). `isAdmin`: the
 * same query means everyone's figures to an admin and one's own to anyone else, so an admin
 * demoted during the session must not be shown what was kept for the admin.
 */
function keyOf(viewer: string, isAdmin: boolean, path: string, query: Record<string, string>): string {
  return `${viewer} ${isAdmin ? 'admin' : 'own'} ${path}?${new URLSearchParams(query).toString()}`;
}

function cachedGet<T>(viewer: string, isAdmin: boolean, path: string, query: Record<string, string>): Promise<T> {
  return answers.load(keyOf(viewer, isAdmin, path, query), async () => (await api.get<T>(path, { params: query })).data);
}

export function fetchSummary(viewer: string, filters: DashboardFilters, isAdmin: boolean): Promise<Summary> {
  return cachedGet<Summary>(viewer, isAdmin, '/analytics/summary', toQuery(filters, isAdmin));
}

export function fetchTrends(viewer: string, filters: DashboardFilters, isAdmin: boolean): Promise<Trends> {
  return cachedGet<Trends>(viewer, isAdmin, '/analytics/trends', toQuery(filters, isAdmin));
}

/** The figures kept for these filters, if both halves are; `fresh` when neither needs asking again. */
export function keptFigures(viewer: string, filters: DashboardFilters, isAdmin: boolean): { summary: Summary; trends: Trends; fresh: boolean } | null {
  const query = toQuery(filters, isAdmin);
  const summary = answers.peek<Summary>(keyOf(viewer, isAdmin, '/analytics/summary', query));
  const trends = answers.peek<Trends>(keyOf(viewer, isAdmin, '/analytics/trends', query));
  if (!summary || !trends) return null;
  return { summary: summary.value, trends: trends.value, fresh: summary.fresh && trends.fresh };
}

/** The CSV of the period (admins): the file's bytes and the name the gateway gives it. */
export async function fetchCsv(filters: DashboardFilters): Promise<{ blob: Blob; filename: string }> {
  const response = await api.get<Blob>('/analytics/export.csv', { params: toQuery(filters, true), responseType: 'blob' });
  const disposition = String(response.headers['content-disposition'] ?? '');
  const match = /filename="?([^";]+)"?/.exec(disposition);
  return { blob: response.data, filename: match?.[1] ?? `relaypacs_stats_${filters.period}.csv` };
}

/** Accounts an admin can narrow the figures to. */
export async function fetchUsers(): Promise<UserChoice[]> {
  const page = (await api.get<{ items: UserChoice[] }>('/admin/users', { params: { limit: 500 } })).data;
  return page.items.map(({ id, username }) => ({ id, username })).sort((a, b) => a.username.localeCompare(b.username));
}
