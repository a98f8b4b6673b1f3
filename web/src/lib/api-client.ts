/**
 * The one HTTP client for the gateway's JSON API: bearer token on every request, silent refresh
 * on 401 (once per request, one refresh at a time across tabs), and a proactive refresh shortly
 * before the access token expires.
 */
import axios, { AxiosHeaders, isAxiosError, type AxiosInstance, type InternalAxiosRequestConfig } from 'axios';

import { env } from '@/config/env';

import { network } from './network';
import { userOfToken } from './session-user';
import { tokens, withTabLock, type StoredTokens, type TokenPair } from './tokens';

export const api = axios.create({ baseURL: env.apiBase, timeout: 30_000 });

/** Paths whose 401 means "wrong credentials", never "refresh and retry". */
const NO_REFRESH = ['/auth/login', '/auth/register', '/auth/refresh', '/auth/logout'];
const REFRESH_MARGIN_MS = 60_000;
/**
 * A refresh holds the cross-tab lock that every 401 in every tab waits for: on a link that
 * drops packets without resetting the connection, an unbounded one would freeze the whole app.
 */
export const REFRESH_TIMEOUT_MS = 30_000;

api.interceptors.request.use((config) => {
  const access = tokens.access();
  const headers = AxiosHeaders.from(config.headers);
  if (access && !headers.has('Authorization')) headers.set('Authorization', `Bearer ${access}`);
  config.headers = headers;
  return config;
});

type RetriableConfig = InternalAxiosRequestConfig & { _retried?: boolean };

type PasswordChangeListener = () => void;
const passwordChangeListeners = new Set<PasswordChangeListener>();

/**
 * `listener` runs whenever the gateway refuses a request because the signed-in user must first
 * choose a new password (a one-time password set by an administrator): the app then asks for one.
 */
export function onPasswordChangeRequired(listener: PasswordChangeListener): () => void {
  passwordChangeListeners.add(listener);
  return () => passwordChangeListeners.delete(listener);
}

function isPasswordChangeRequired(error: unknown): boolean {
  if (!isAxiosError(error) || error.response?.status !== 403) return false;
  const data: unknown = error.response.data;
  return typeof data === 'object' && data !== null && (data as { code?: unknown }).code === 'password_change_required';
}

api.interceptors.response.use(undefined, async (error: unknown) => {
  // No answer at all although the browser says online: the header shows "Reconnecting…" until
  // the gateway answers again.
  if (isAxiosError(error) && !error.response && error.code !== 'ERR_CANCELED') network.reportUnreachable();
  if (isPasswordChangeRequired(error)) for (const listener of [...passwordChangeListeners]) listener();
  if (!isAxiosError(error) || error.response?.status !== 401 || !error.config) throw error;
  const config = error.config as RetriableConfig;
  if (config._retried || NO_REFRESH.some((path) => config.url?.endsWith(path))) throw error;
  // The gateway refused this token although the device thinks it is still valid (a clock set
  // wrong, a token ended on the gateway): refresh it now rather than wait for its local expiry.
  const used = AxiosHeaders.from(config.headers).get('Authorization');
  const refused = typeof used === 'string' ? used.replace(/^Bearer /, '') : null;
  const fresh = await refreshAccessToken({ refused });
  if (!fresh || fresh === refused) throw error;
  config._retried = true;
  const headers = AxiosHeaders.from(config.headers);
  headers.set('Authorization', `Bearer ${fresh}`);
  config.headers = headers;
  return api.request(config);
});

export class SessionEndedError extends Error {
  constructor() {
    super('Your session has ended. Please sign in again.');
    this.name = 'SessionEndedError';
  }
}

let inFlight: Promise<string | null> | null = null;
const REFRESH_LOCK = 'relaypacs-token-refresh';

/**
 * Runs `task`, which ends the stored session on the gateway and stores its successor (a password
 * change ends every sign-in of the user, then signs in again), while no tab can refresh.
 *
 * A request refused meanwhile waits for the lock and then goes again with the successor's token,
 * instead of spending the ended session's refresh token, being refused and signing the user out.
 * `task` gets a client without this module's interceptors: through `api`, a 401 would wait for
 * the very lock the task holds.
 */
export function replaceSession<T>(task: (http: AxiosInstance) => Promise<T>): Promise<T> {
  // Created here, not at load: tests (and axios' defaults) set the adapter after import.
  const http = axios.create({ baseURL: env.apiBase, timeout: 30_000 });
  return withTabLock(REFRESH_LOCK, () => task(http));
}

/** Whether the session a refresh started from is still the stored one (the refresh token is unique to it). */
function stillStored(before: StoredTokens): boolean {
  return tokens.get()?.refresh === before.refresh;
}

/**
 * Returns a valid access token, refreshing it if needed; null when signed out or when the gateway
 * cannot be reached (tokens are kept then, so an offline user stays signed in).
 *
 * `refused`: the access token the gateway just answered 401 to. It is refreshed whatever its
 * expiry says, unless another request or tab has already replaced it: then the replacement is
 * returned if it is the same user's, and null if it is another user's.
 */
export function refreshAccessToken(options: { force?: boolean; refused?: string | null } = {}): Promise<string | null> {
  inFlight ??= withTabLock(REFRESH_LOCK, async () => {
    const before = tokens.get();
    if (!before) return null;
    if (options.refused && before.access !== options.refused) {
      // Replaced meanwhile: by this user's refresh in another tab, or by a sign-out and someone
      // else's sign-in, whose token must not carry a request made in the previous user's session.
      return userOfToken(before.access) === userOfToken(options.refused) ? before.access : null;
    }
    // Another tab may have refreshed while this one waited for the lock.
    if (!options.force && !options.refused && before.expiresAt - Date.now() > REFRESH_MARGIN_MS) return before.access;
    try {
      const response = await postRefresh(before.refresh);
      // A sign-out or a sign-in does not wait for this lock: if the session changed while the
      // gateway answered, the new tokens belong to a session that is over and must not replace
      // the one there is now (another user's, perhaps).
      if (!stillStored(before)) return null;
      const saved = tokens.save(response.data);
      // On disk before the lock goes: a browser killed now must not come back with the spent one.
      await tokens.durable();
      return saved.access;
    } catch (error) {
      const status = isAxiosError(error) ? error.response?.status : undefined;
      // Nor may the refusal of a session that is over sign out the one there is now.
      if ((status === 400 || status === 401 || status === 403) && stillStored(before)) tokens.clear();
      return null;
    }
  }).finally(() => {
    inFlight = null;
  });
  return inFlight;
}

/** A timer, not `AbortSignal.timeout`: the app's other timers are the ones tests can drive. */
async function postRefresh(refresh: string): Promise<{ data: TokenPair }> {
  const controller = new AbortController();
  const deadline = setTimeout(() => controller.abort(), REFRESH_TIMEOUT_MS);
  try {
    return await axios.post<TokenPair>(
      `${env.apiBase}/auth/refresh`,
      { refresh_token: refresh },
      { signal: controller.signal },
    );
  } finally {
    clearTimeout(deadline);
  }
}

let timer: ReturnType<typeof setTimeout> | undefined;

/** Keeps the access token fresh while the app is open; call once at start. */
export function startSilentRefresh(): () => void {
  const schedule = (): void => {
    clearTimeout(timer);
    const current = tokens.get();
    if (!current) return;
    const due = Math.max(current.expiresAt - Date.now() - REFRESH_MARGIN_MS, 5_000);
    timer = setTimeout(() => {
      void refreshAccessToken().then((fresh) => {
        // Offline or gateway down: try again in a while rather than signing the user out.
        if (!fresh && tokens.get()) timer = setTimeout(schedule, 30_000);
      });
    }, due);
  };
  schedule();
  const unsubscribe = tokens.subscribe(schedule);
  return () => {
    clearTimeout(timer);
    unsubscribe();
  };
}
