/**
 * Two tabs on a shared workstation: Alice's tab runs her upload engine; in another tab her
 * session ends and Bob signs in. Both tabs share localStorage, so Alice's tab learns of it through
 * the `storage` event; it must stop her engine before Bob's token can reach it, and not act for
 * anyone until it has reloaded.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { EngineCommand } from '@/features/upload/engine/types';
import { accessTokenOf } from '@/testing/access-token';
import { installMemoryStorage, type MemoryStorage } from '@/testing/memory-storage';

const KEY = 'relaypacs.tokens';

/** The engine's worker, as this tab's engine client sees it. */
class FakeWorker {
  static created: FakeWorker[] = [];
  readonly received: EngineCommand[] = [];
  terminated = false;

  constructor() {
    FakeWorker.created.push(this);
  }

  postMessage(command: EngineCommand): void {
    if (!this.terminated) this.received.push(command);
  }

  terminate(): void {
    this.terminated = true;
  }

  addEventListener(): void {
    // the engine's answers are not needed here
  }

  /** The sign-in tokens the engine was handed, in order (null: signed out). */
  tokens(): (string | null)[] {
    return this.received.flatMap((command) => (command.type === 'token' ? [command.token] : []));
  }
}

let storage: MemoryStorage;

function sessionOf(user: string, n = 1): string {
  return JSON.stringify({ access: accessTokenOf(user, n), refresh: `refresh-of-${user}-${n}`, expiresAt: Date.now() + 900_000 });
}

/** Another tab writes the tokens (null: removes them), and this tab hears of it. */
function anotherTabWrites(value: string | null): void {
  if (value === null) storage.removeItem(KEY);
  else storage.setItem(KEY, value);
  window.dispatchEvent(Object.assign(new Event('storage'), { key: KEY, newValue: value }));
}

/** A tab opened with `session` in localStorage, its engine started and the hand-over watched. */
async function openTab(session: string | null) {
  if (session !== null) storage.setItem(KEY, session);
  const { tokens } = await import('@/lib/tokens');
  const { startUploadEngine } = await import('@/features/upload');
  const { leaveWhenSessionReplacedElsewhere } = await import('../device-data');
  const reload = vi.fn();
  leaveWhenSessionReplacedElsewhere(reload);
  const signedIn: boolean[] = [];
  tokens.subscribe((value) => signedIn.push(value !== null));
  if (session !== null) startUploadEngine();
  return { tokens, reload, signedIn, worker: () => FakeWorker.created.at(-1) };
}

beforeEach(() => {
  // Each test is a fresh tab: its own modules, window and localStorage.
  vi.resetModules();
  storage = installMemoryStorage();
  vi.stubGlobal('window', new EventTarget());
  vi.stubGlobal('navigator', {});
  vi.stubGlobal('Worker', FakeWorker);
  FakeWorker.created = [];
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe("a tab whose user's session is replaced in another tab", () => {
  it("stops the engine before Bob's token reaches it, and reloads", async () => {
    const tab = await openTab(sessionOf('alice'));
    const engine = tab.worker()!;
    expect(engine.tokens()).toEqual([accessTokenOf('alice')]);

    anotherTabWrites(sessionOf('bob'));

    expect(engine.tokens()).toEqual([accessTokenOf('alice')]);
    expect(engine.terminated).toBe(true);
    expect(tab.reload).toHaveBeenCalledTimes(1);
    // Until the reload lands, nothing in this tab (a request, a refresh) acts with Bob's tokens.
    expect(tab.tokens.get()).toBeNull();
    expect(tab.tokens.access()).toBeNull();
    expect(tab.signedIn).toEqual([false]);
  });

  it('stops the engine when she is signed out in the other tab', async () => {
    const tab = await openTab(sessionOf('alice'));

    anotherTabWrites(null);

    expect(tab.worker()!.terminated).toBe(true);
    expect(tab.reload).toHaveBeenCalledTimes(1);
  });

  it('stops the engine when her session lapsed here and Bob signs in over there', async () => {
    const tab = await openTab(sessionOf('alice'));
    // Her refresh token was refused in this tab: signed out here, her engine waits for a token.
    tab.tokens.clear();
    const engine = tab.worker()!;
    expect(engine.terminated).toBe(false);

    anotherTabWrites(sessionOf('bob'));

    expect(engine.terminated).toBe(true);
    expect(engine.tokens()).not.toContain(accessTokenOf('bob'));
    expect(tab.reload).toHaveBeenCalledTimes(1);
  });

  it("leaves Bob's tokens alone when a refresh it had in flight for Alice ends afterwards", async () => {
    const tab = await openTab(sessionOf('alice'));
    const bob = sessionOf('bob');
    anotherTabWrites(bob);

    // Alice's refresh, sent before Bob signed in: accepted, or refused (she signed out).
    tab.tokens.save({ access_token: accessTokenOf('alice', 2), refresh_token: 'refresh-of-alice-2', token_type: 'bearer', expires_in: 900 });
    expect(storage.getItem(KEY)).toBe(bob);
    tab.tokens.clear();
    expect(storage.getItem(KEY)).toBe(bob);
  });

  it('hears of it only once, however many changes follow before the reload', async () => {
    const tab = await openTab(sessionOf('alice'));

    anotherTabWrites(null);
    anotherTabWrites(sessionOf('bob'));

    expect(tab.reload).toHaveBeenCalledTimes(1);
    expect(tab.tokens.get()).toBeNull();
    expect(tab.signedIn).toEqual([false]);
  });
});

describe('a tab whose session stays the same user', () => {
  it('passes on a refresh made in another tab to the engine, and keeps going', async () => {
    const tab = await openTab(sessionOf('alice'));

    anotherTabWrites(sessionOf('alice', 2));

    expect(tab.worker()!.terminated).toBe(false);
    expect(tab.worker()!.tokens()).toEqual([accessTokenOf('alice'), accessTokenOf('alice', 2)]);
    expect(tab.reload).not.toHaveBeenCalled();
  });

  it('follows a sign-in made in another tab when it held no one’s session', async () => {
    const tab = await openTab(null);

    anotherTabWrites(sessionOf('bob'));

    expect(tab.reload).not.toHaveBeenCalled();
    expect(tab.tokens.access()).toBe(accessTokenOf('bob'));
    expect(tab.signedIn).toEqual([true]);
  });

  it('ignores changes to other keys', async () => {
    const tab = await openTab(sessionOf('alice'));

    window.dispatchEvent(Object.assign(new Event('storage'), { key: 'relaypacs.user', newValue: null }));

    expect(tab.worker()!.terminated).toBe(false);
    expect(tab.reload).not.toHaveBeenCalled();
  });
});
