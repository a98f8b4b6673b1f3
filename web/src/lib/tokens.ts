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
 *
 * Because every tab reads the same localStorage, a sign-out or another user's sign-in in one tab
 * is also the current session of every other tab, whose memory (upload engine, screens) still
 * holds the previous user's data. A tab therefore remembers whose session it holds, and when
 * another tab replaces it with someone else's (or with none) it stops acting for anyone: see
 * `tokens.onReplacedElsewhere`.
 */
import Dexie, { type Table } from 'dexie';

import { userOfToken } from './session-user';

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
const replacedListeners = new Set<() => void>();

/**
 * Set once another tab replaced the session this tab holds state for; from then on this tab reads
 * no tokens at all, so nothing left running in it (a request, a refresh, the engine) can act with
 * the next user's tokens before it has reloaded.
 */
let replaced = false;

function read(): StoredTokens | null {
  if (replaced) return null;
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

/**
 * The user this tab last held a session of (null: none known). A sign-out does not reset it: after
 * a lapsed session the tab's engine still holds that user's queue, waiting for their next token.
 */
let tabUser: string | null = userOfToken(read()?.access);

function holdSessionOf(value: StoredTokens | null): void {
  const user = userOfToken(value?.access);
  if (user) tabUser = user;
}

/** Another tab changed the tokens (`key` null: it cleared localStorage). */
function changedElsewhere(key: string | null): void {
  if (replaced || (key !== KEY && key !== null)) return;
  const value = read();
  const user = userOfToken(value?.access);
  if (tabUser !== null && user !== tabUser) {
    // Before this tab's listeners hear of the new tokens: the engine must be stopped before a
    // token of the next user could reach it.
    replaced = true;
    for (const listener of [...replacedListeners]) listener();
    notify(null);
    return;
  }
  holdSessionOf(value);
  notify(value);
}

if (typeof window !== 'undefined') {
  window.addEventListener('storage', (event) => changedElsewhere(event.key));
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
    // A refresh this tab had in flight for the previous user must not replace the next one's.
    if (replaced) return value;
    const at = nextChangedAt();
    localStorage.setItem(KEY, JSON.stringify(value));
    localStorage.setItem(CHANGED_AT_KEY, String(at));
    writeDurable(value, at);
    holdSessionOf(value);
    notify(value);
    return value;
  },
  clear(): void {
    // Nor may its refusal sign the next user out.
    if (replaced) return;
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
  /**
   * `listener` runs once, when another tab signs out the user this tab holds a session of, or
   * signs in someone else: before this tab's `subscribe` listeners hear of it (they are then told
   * "signed out"), and from then on this tab reads no tokens. What this tab holds in memory is the
   * previous user's; the listener is to stop it and reload.
   */
  onReplacedElsewhere(listener: () => void): () => void {
    replacedListeners.add(listener);
    return () => replacedListeners.delete(listener);
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
      holdSessionOf(durable.tokens);
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
