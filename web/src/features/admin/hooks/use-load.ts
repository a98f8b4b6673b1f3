import { useCallback, useEffect, useState } from 'react';

import { toUserFacingError, type UserFacingError } from '@/lib/problem';

export interface Loaded<T> {
  data: T | null;
  error: UserFacingError | null;
  loading: boolean;
  reload: () => void;
}

interface Settled<T> {
  request: string;
  data: T | null;
  error: UserFacingError | null;
}

/**
 * Runs `load` whenever `key` changes (and on `reload()`), keeping the last data while the next
 * request runs so that tables do not jump; answers of superseded requests are dropped.
 */
export function useLoad<T>(load: () => Promise<T>, key: string): Loaded<T> {
  const [round, setRound] = useState(0);
  const [settled, setSettled] = useState<Settled<T>>({ request: '', data: null, error: null });
  const request = `${round}|${key}`;

  useEffect(() => {
    let current = true;
    load().then(
      (data) => {
        if (current) setSettled({ request, data, error: null });
      },
      (reason: unknown) => {
        if (current) setSettled((previous) => ({ request, data: previous.data, error: toUserFacingError(reason) }));
      },
    );
    return () => {
      current = false;
    };
    // `load` is rebuilt on every render; `request` says when what it asks for changed.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [request]);

  const reload = useCallback(() => setRound((value) => value + 1), []);
  return { data: settled.data, error: settled.error, loading: settled.request !== request, reload };
}
