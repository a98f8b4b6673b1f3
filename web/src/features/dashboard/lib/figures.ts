/** Numbers as the dashboard shows them. */

const count = new Intl.NumberFormat('en-GB');

export function formatCount(value: number): string {
  return Number.isFinite(value) ? count.format(value) : '—';
}

/** Gigabytes (10^9 bytes) with two decimals; small but non-zero volumes do not show as 0.00. */
export function formatGigabytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '—';
  if (bytes === 0) return '0 GB';
  const gb = bytes / 1e9;
  if (gb < 0.01) return '< 0.01 GB';
  return `${gb.toLocaleString('en-GB', { minimumFractionDigits: 2, maximumFractionDigits: 2 })} GB`;
}

/** A 0..1 ratio as a percentage with one decimal; null (nothing finished) is a dash. */
export function formatPercent(ratio: number | null): string {
  if (ratio === null || !Number.isFinite(ratio)) return '—';
  const percent = Math.round(ratio * 1000) / 10;
  return `${percent % 1 === 0 ? percent.toFixed(0) : percent.toFixed(1)} %`;
}

/** Seconds as the shortest readable duration: 42 s, 3 min 5 s, 2 h 10 min, 1 d 4 h. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** Megabytes (10^6 bytes), for the daily volume axis. */
export function toMegabytes(bytes: number): number {
  return Math.round((bytes / 1e6) * 100) / 100;
}

export const SERVICE_LEVEL_LABELS: Record<string, string> = {
  stat: 'STAT',
  emergency: 'Emergency',
  routine: 'Routine',
};
