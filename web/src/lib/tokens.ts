/**
 * The signed-in session's tokens, shared by every tab through localStorage.
 *
 * The refresh token rotates and a reused one revokes the whole family, so two tabs must never
 * refresh at once: refreshing runs under a Web Lock and re-reads storage first.
 */

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
}

export interface StoredTokens {
  access: string;
  refresh: string;
  /** epoch ms when the access token expires */
  expiresAt: number;
}

const KEY = 'relaypacs.tokens';
type Listener = (tokens: StoredTokens | null) => void;
const listeners = new Set<Listener>();

function read(): StoredTokens | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Partial<StoredTokens>;
    if (typeof parsed.access !== 'string' || typeof parsed.refresh !== 'string') return null;
    return { access: parsed.access, refresh: parsed.refresh, expiresAt: Number(parsed.expiresAt) };
  } catch {
    return null;
  }
}

function notify(value: StoredTokens | null): void {
  for (const listener of listeners) listener(value);
}

if (typeof window !== 'undefined') {
  window.addEventListener('storage', (event) => {
    if (event.key === KEY) notify(read());
  });
}

export const tokens = {
  get: read,
  access(): string | null {
    return read()?.access ?? null;
  },
  save(pair: TokenPair, now = Date.now()): StoredTokens {
    const value: StoredTokens = {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: now + pair.expires_in * 1000,
    };
    localStorage.setItem(KEY, JSON.stringify(value));
    notify(value);
    return value;
  },
  clear(): void {
    localStorage.removeItem(KEY);
    notify(null);
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

/** Run `task` while holding a lock shared by all tabs (falls back to no lock where unsupported). */
export async function withTabLock<T>(name: string, task: () => Promise<T>): Promise<T> {
  if (typeof navigator !== 'undefined' && 'locks' in navigator) {
    return navigator.locks.request(name, task);
  }
  return task();
}
