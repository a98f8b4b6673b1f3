/** The trends API's days, shaped for charts: every day present, every modality in every day. */
import type { TrendDay } from '../api/analytics';

const DAY_MS = 86_400_000;

function addDays(isoDate: string, days: number): string {
  return new Date(Date.parse(`${isoDate}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/**
 * Days from the first to the last given, in order, with a zero day wherever one is missing (the
 * gateway already zero-fills; this keeps the charts honest if a day ever comes back absent).
 */
export function fillDays(days: readonly TrendDay[]): TrendDay[] {
  if (days.length === 0) return [];
  const byDate = new Map(days.map((day) => [day.date, day]));
  const sorted = [...byDate.keys()].sort();
  const first = sorted[0] ?? '';
  const last = sorted[sorted.length - 1] ?? first;
  const filled: TrendDay[] = [];
  for (let date = first; date <= last; date = addDays(date, 1)) {
    filled.push(byDate.get(date) ?? { date, uploads: 0, bytes: 0, delivered: 0, failed: 0, modalities: {} });
  }
  return filled;
}

/** Every modality seen in the period, most uploads first (then by name, for a stable legend). */
export function modalitiesOf(days: readonly TrendDay[]): string[] {
  const totals = new Map<string, number>();
  for (const day of days) {
    for (const [modality, n] of Object.entries(day.modalities)) totals.set(modality, (totals.get(modality) ?? 0) + n);
  }
  return [...totals.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).map(([m]) => m);
}

export type ModalityRow = { date: string } & Record<string, number | string>;

/** One row a day with a count for every modality of the period (0 where it had none). */
export function modalitySeries(days: readonly TrendDay[]): { modalities: string[]; rows: ModalityRow[] } {
  const filled = fillDays(days);
  const modalities = modalitiesOf(filled);
  const rows = filled.map((day) => {
    const row: ModalityRow = { date: day.date };
    for (const modality of modalities) row[modality] = day.modalities[modality] ?? 0;
    return row;
  });
  return { modalities, rows };
}

/** "12 Mar" for an axis tick; the full date stays in the tables. */
export function shortDate(isoDate: string): string {
  const date = new Date(`${isoDate}T00:00:00Z`);
  return Number.isNaN(date.getTime())
    ? isoDate
    : date.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
}
