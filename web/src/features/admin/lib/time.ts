/** Ages and date ranges for the admin tables and filters. */

/** How long ago, compactly: "40 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function formatAge(iso: string, now: number): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return '—';
  const seconds = Math.max(0, Math.floor((now - then) / 1000));
  if (seconds < 60) return `${seconds} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days} d ${hours % 24} h` : `${days} d`;
}

export interface TimeRange {
  since?: string;
  until?: string;
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

function localMidnight(day: string): Date | null {
  if (!DAY.test(day)) return null;
  const [year, month, date] = day.split('-').map(Number) as [number, number, number];
  const value = new Date(year, month - 1, date);
  // Reject dates the calendar does not have (2026-02-30 would roll over to March).
  return value.getFullYear() === year && value.getMonth() === month - 1 && value.getDate() === date ? value : null;
}

/**
 * Calendar days chosen in the browser's time zone ("from" and "to" both included) as the API's
 * half-open range: since = start of "from", until = start of the day after "to", both with a zone.
 */
export function dayRange(from: string, to: string): { range: TimeRange } | { error: string } {
  const range: TimeRange = {};
  let start: Date | null = null;
  if (from) {
    start = localMidnight(from);
    if (!start) return { error: 'The "from" date is not a valid date.' };
    range.since = start.toISOString();
  }
  if (to) {
    const end = localMidnight(to);
    if (!end) return { error: 'The "to" date is not a valid date.' };
    if (start && end < start) return { error: 'The "to" date must not be before the "from" date.' };
    end.setDate(end.getDate() + 1);
    range.until = end.toISOString();
  }
  return { range };
}
