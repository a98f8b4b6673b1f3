import { useEffect, useState } from 'react';

import { toUserFacingError } from '@/lib/problem';

import { fetchSummary, fetchTrends, keptFigures, type Summary, type Trends } from '../api/analytics';
import { startCountdown } from '../lib/countdown';
import type { DashboardFilters } from '../lib/period';

export interface Figures {
  /** the view (filters as a query string) these figures are for */
  key: string;
  summary: Summary;
  trends: Trends;
}

export interface FiguresState {
  /** this view's figures, if known */
  loaded: Figures | null;
  /** the last figures shown for another view: kept on screen while the gateway asks to wait */
  previous: Figures | null;
  error: string | null;
  /** seconds until the figures are asked for again, while the gateway asks to wait (429) */
  waitSeconds: number | null;
}

/** When the gateway refuses for too many requests and gives no Retry-After. */
const DEFAULT_WAIT_S = 60;

/**
 * The figures of a view: kept ones at once, fresh ones from the gateway when they are due. Told
 * to wait (429), it keeps what is shown, counts down and asks again by itself.
 */
export function useFigures(viewer: string, filters: DashboardFilters, isAdmin: boolean, key: string, onFigures: (figures: Figures) => void): FiguresState {
  const [figures, setFigures] = useState<Figures | null>(null);
  const [error, setError] = useState<{ key: string; message: string } | null>(null);
  const [waitUntil, setWaitUntil] = useState<number | null>(null);
  const [waitSeconds, setWaitSeconds] = useState<number | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (waitUntil === null) return;
    return startCountdown(waitUntil, setWaitSeconds, () => {
      setWaitUntil(null);
      setWaitSeconds(null);
      setAttempt((n) => n + 1);
    });
  }, [waitUntil]);

  useEffect(() => {
    // Waiting: the countdown asks again. Kept and fresh: nothing to ask.
    if (waitUntil !== null || keptFigures(viewer, filters, isAdmin)?.fresh) return;
    let current = true;
    Promise.all([fetchSummary(viewer, filters, isAdmin), fetchTrends(viewer, filters, isAdmin)])
      .then(([summary, trends]) => {
        if (!current) return;
        const fresh = { key, summary, trends };
        setFigures(fresh);
        setError(null);
        onFigures(fresh);
      })
      .catch((caught: unknown) => {
        if (!current) return;
        const failure = toUserFacingError(caught);
        if (failure.status === 429) setWaitUntil(Date.now() + (failure.retryAfter ?? DEFAULT_WAIT_S) * 1000);
        else setError({ key, message: failure.message });
      });
    return () => {
      current = false;
    };
  }, [viewer, filters, isAdmin, key, waitUntil, attempt, onFigures]);

  const kept = keptFigures(viewer, filters, isAdmin);
  const loaded = figures?.key === key ? figures : kept ? { key, summary: kept.summary, trends: kept.trends } : null;
  return {
    loaded,
    previous: loaded ? null : figures,
    error: error?.key === key ? error.message : null,
    waitSeconds: waitUntil === null ? null : waitSeconds,
  };
}
