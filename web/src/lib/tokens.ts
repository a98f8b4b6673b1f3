/**
 * The signed-in session's tokens, shared by every tab through localStorage.
 *
 * The refresh token rotates and a reused one revokes the whole family, so two tabs must never
 * refresh at once: refreshing runs under a Web Lock and re-reads storage first.
 *
 * localStorage alone does not survive a browser that dies: Chromium writes it to disk in
 * batches, seconds late, so a browser killed (or a phone that runs out of battery) just after a
 * sign-in or a refresh comes back signed out, or with a refresh token already spent. Every change
 * is therefore also written to IndexedDB, whose commits are on disk when they complete, with the
 * time of the change; at start `restoreTokens()` keeps the newer of the two.
 *
 * The same database names the device's owner: the user whose queued studies and cached patient
 * data this device holds (see `deviceOwner`).
 */
import Dexie, { type Table } from 'dexie';

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
/** epoch ms of this device's last change to the tokens (sign-in, refresh or sign-out) */
const CHANGED_AT_KEY = 'relaypacs.tokens.changed-at';
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

/** The durable copy: the tokens (null once signed out) and when they changed. */
interface DurableTokens {
  key: 'tokens';
  tokens: StoredTokens | null;
  changedAt: number;
}

/** Whose data the device holds; written before that user's tokens are kept. */
interface DeviceOwnerEntry {
  key: 'owner';
  userId: string;
}

class SessionDatabase extends Dexie {
  entries!: Table<DurableTokens | DeviceOwnerEntry, string>;

  constructor() {
    super('relaypacs-session');
    this.version(1).stores({ entries: 'key' });
  }
}

let database: SessionDatabase | null = null;
let writes: Promise<void> = Promise.resolve();
/** A stuck IndexedDB must not stop a sign-in or the app's start: past this, go on without it. */
const DURABLE_WAIT_MS = 2_000;

function atMost<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    void promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}

function sessionDatabase(): SessionDatabase {
  database ??= new SessionDatabase();
  return database;
}

async function durableTokens(db: SessionDatabase): Promise<DurableTokens | undefined> {
  const entry = await db.entries.get('tokens');
  return entry?.key === 'tokens' ? entry : undefined;
}

function changedAt(): number {
  return Number(localStorage.getItem(CHANGED_AT_KEY)) || 0;
}

/** A change time later than the last one, even if the clock went back. */
function nextChangedAt(): number {
  return Math.max(Date.now(), changedAt() + 1);
}

/** Queues the durable write; an older change never replaces a newer one (another tab's). */
function writeDurable(tokens: StoredTokens | null, at: number): void {
  writes = writes
    .then(async () => {
      const db = sessionDatabase();
      await db.transaction('rw', db.entries, async () => {
        const current = await durableTokens(db);
        if (!current || current.changedAt <= at) await db.entries.put({ key: 'tokens', tokens, changedAt: at });
      });
    })
    .catch(() => {
      // No IndexedDB (private mode, quota): localStorage alone, as before.
    });
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
    const at = nextChangedAt();
    localStorage.setItem(KEY, JSON.stringify(value));
    localStorage.setItem(CHANGED_AT_KEY, String(at));
    writeDurable(value, at);
    notify(value);
    return value;
  },
  clear(): void {
    const at = nextChangedAt();
    localStorage.removeItem(KEY);
    localStorage.setItem(CHANGED_AT_KEY, String(at));
    writeDurable(null, at);
    notify(null);
  },
  /** Resolves once every change so far is on disk (or could not be written); never rejects. */
  async durable(): Promise<void> {
    await atMost(writes, DURABLE_WAIT_MS);
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

/**
 * Call once before the app reads the tokens: after a browser that died, the durable copy may be
 * newer than what localStorage kept; otherwise localStorage is the newer (or the only) one, and
 * the durable copy is brought up to it (tokens saved before this existed, or by another tab).
 */
export async function restoreTokens(): Promise<void> {
  const lookup = durableTokens(sessionDatabase()).then((entry) => ({ entry }));
  // No answer (no IndexedDB, or stuck): localStorage is all there is.
  const found = await atMost(lookup, DURABLE_WAIT_MS);
  if (!found) return;
  const durable = found.entry;
  try {
    const localAt = changedAt();
    if (durable && durable.changedAt > localAt) {
      if (durable.tokens) localStorage.setItem(KEY, JSON.stringify(durable.tokens));
      else localStorage.removeItem(KEY);
      localStorage.setItem(CHANGED_AT_KEY, String(durable.changedAt));
      return;
    }
    const local = read();
    if (JSON.stringify(local) !== JSON.stringify(durable?.tokens ?? null)) {
      // Saved without a time (before the durable copy existed): it is the newest there is.
      const at = localAt || nextChangedAt();
      localStorage.setItem(CHANGED_AT_KEY, String(at));
      writeDurable(local, at);
    }
  } catch {
    return; // localStorage refused the write: the app starts with what it can read
  }
  await tokens.durable();
}

/**
 * The user whose queued studies and cached patient data this device holds; null when not known
 * (never recorded, or IndexedDB does not answer).
 *
 * localStorage is no place for it: a sign-in's writes there can be lost to a killed browser while
 * the studies queued after it, in IndexedDB, are not, and the next person to sign in would then be
 * taken for their owner.
 */
export async function deviceOwner(): Promise<string | null> {
  const lookup = sessionDatabase().entries.get('owner');
  const entry = await atMost(lookup, DURABLE_WAIT_MS);
  return entry?.key === 'owner' ? entry.userId : null;
}

/** Resolves once `userId` is on disk as the device's owner (or could not be written); never rejects. */
export async function recordDeviceOwner(userId: string): Promise<void> {
  await atMost(sessionDatabase().entries.put({ key: 'owner', userId }), DURABLE_WAIT_MS);
}
