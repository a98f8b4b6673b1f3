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
  /**
   * seconds until the figures are asked for again, while the gateway asks to wait (429); 0 once
   * the wait is over and they are being asked for again (the last figures stay until they come)
   */
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
  /** the view asked for again after a wait, until its answer comes */
  const [retrying, setRetrying] = useState<string | null>(null);
  /** the last figures on screen, fresh or kept: what stays shown while another view must wait */
  const [shown, setShown] = useState<Figures | null>(null);

  useEffect(() => {
    if (waitUntil === null) return;
    return startCountdown(waitUntil, setWaitSeconds, () => {
      setWaitUntil(null);
      setWaitSeconds(null);
      setRetrying(key);
      setAttempt((n) => n + 1);
    });
  }, [waitUntil, key]);

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
        setRetrying(null);
        onFigures(fresh);
      })
      .catch((caught: unknown) => {
        if (!current) return;
        const failure = toUserFacingError(caught);
        setRetrying(null);
        if (failure.status === 429) {
          const seconds = failure.retryAfter ?? DEFAULT_WAIT_S;
          setWaitSeconds(seconds); // the notice from the first frame, not a skeleton until the first tick
          setWaitUntil(Date.now() + seconds * 1000);
        } else setError({ key, message: failure.message });
      });
    return () => {
      current = false;
    };
  }, [viewer, filters, isAdmin, key, waitUntil, attempt, onFigures]);

  const kept = keptFigures(viewer, filters, isAdmin);
  const loaded = figures?.key === key ? figures : kept ? { key, summary: kept.summary, trends: kept.trends } : null;
  // Remember what is on screen, kept figures included (they are never fetched by this view), so
  // a refusal for the next view has them to keep showing. Set while rendering, as React advises
  // for state following other values; the guard stops at the second pass.
  if (loaded && !sameFigures(shown, loaded)) setShown(loaded);
  const failed = error?.key === key ? error.message : null;
  return {
    loaded,
    previous: loaded ? null : shown,
    error: failed,
    waitSeconds: waitUntil !== null ? waitSeconds : retrying === key && !loaded && !failed ? 0 : null,
  };
}

function sameFigures(a: Figures | null, b: Figures): boolean {
  return a !== null && a.key === b.key && a.summary === b.summary && a.trends === b.trends;
}
