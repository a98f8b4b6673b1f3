/** The dashboard's period and filters, and how they become the analytics API's query. */

export type Period = '1w' | '2w' | '1m' | '3m' | '6m' | 'all';

export const PERIODS: { value: Period; label: string; long: string }[] = [
  { value: '1w', label: '1W', long: 'the last week' },
  { value: '2w', label: '2W', long: 'the last two weeks' },
  { value: '1m', label: '1M', long: 'the last 30 days' },
  { value: '3m', label: '3M', long: 'the last three months' },
  { value: '6m', label: '6M', long: 'the last six months' },
  { value: 'all', label: 'ALL', long: 'all time' },
];

export interface DashboardFilters {
  period: Period;
  /** admins only: one user's figures */
  userId: string;
  /** admins only: one modality (CT, MR…) */
  modality: string;
  /** admins only */
  serviceLevel: '' | 'stat' | 'emergency' | 'routine';
}

export const DEFAULT_FILTERS: DashboardFilters = { period: '1m', userId: '', modality: '', serviceLevel: '' };

export function isPeriod(value: string | null | undefined): value is Period {
  return PERIODS.some((p) => p.value === value);
}

/**
 * Query parameters for /analytics/*: always the period; the filters only for admins and only
 * when set (the gateway refuses them from anyone else, and an empty value is not "all").
 */
export function toQuery(filters: DashboardFilters, isAdmin: boolean): Record<string, string> {
  const query: Record<string, string> = { period: filters.period };
  if (!isAdmin) return query;
  if (filters.userId) query.user_id = filters.userId;
  const modality = filters.modality.trim().toUpperCase();
  if (/^[A-Z0-9]{1,16}$/.test(modality)) query.modality = modality;
  if (filters.serviceLevel) query.service_level = filters.serviceLevel;
  return query;
}

/** The filters as URL search parameters (so a view can be bookmarked), and back. */
export function toSearch(filters: DashboardFilters, isAdmin: boolean): URLSearchParams {
  return new URLSearchParams(toQuery(filters, isAdmin));
}

export function fromSearch(search: URLSearchParams): DashboardFilters {
  const period = search.get('period');
  const level = search.get('service_level');
  return {
    period: isPeriod(period) ? period : DEFAULT_FILTERS.period,
    userId: search.get('user_id') ?? '',
    modality: search.get('modality') ?? '',
    serviceLevel: level === 'stat' || level === 'emergency' || level === 'routine' ? level : '',
  };
}
