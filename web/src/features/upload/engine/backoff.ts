/** Retry policy: which failures are worth another try, and how long to wait before it. */

export interface BackoffOptions {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000 };

/**
 * Exponential backoff with "equal jitter": half the window is fixed so a flapping link is not
 * hammered, half is random so many phones that lost the same Wi-Fi do not retry in lockstep.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const window = Math.min(options.capMs, options.baseMs * 2 ** Math.max(0, attempt));
  return Math.round(window / 2 + random() * (window / 2));
}

export type FailureKind = 'retry' | 'auth' | 'checksum' | 'fatal';

/** status null means no HTTP answer at all (offline, refused, reset, stalled). */
export function classifyFailure(status: number | null, code?: string | null): FailureKind {
  if (status === null) return 'retry';
  if (status === 401) return 'auth';
  if (status === 400 && code === 'checksum_mismatch') return 'checksum';
  if (status === 408 || status === 425 || status === 429 || status >= 500) return 'retry';
  // The first request with this Idempotency-Key is still being carried out: asking again later
  // gets its answer (the upload it opened), so it is a wait, not a refusal.
  if (status === 409 && code === 'idempotency_key_in_flight') return 'retry';
  return 'fatal';
}

/** Retry-After as seconds or an HTTP date → milliseconds to wait (null when absent or bad). */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}
