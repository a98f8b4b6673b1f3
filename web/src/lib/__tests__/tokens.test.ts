import { beforeEach, describe, expect, it } from 'vitest';

import { type MemoryStorage } from '@/testing/memory-storage';
import { startSignedOut } from '@/testing/signed-out-device';

import { restoreTokens, tokens, type TokenPair } from '../tokens';

let storage: MemoryStorage;

function pair(refresh: string): TokenPair {
  return { access_token: `access-of-${refresh}`, refresh_token: refresh, token_type: 'bearer', expires_in: 3600 };
}

beforeEach(async () => {
  storage = await startSignedOut();
});

describe('tokens after the browser was killed', () => {
  it('brings back a sign-in that localStorage had not written to disk', async () => {
    const onDisk = storage.snapshot();
    tokens.save(pair('r1'));
    await tokens.durable();
    storage.crash(onDisk);
    expect(tokens.get()).toBeNull();

    await restoreTokens();
    expect(tokens.get()?.refresh).toBe('r1');
    expect(tokens.access()).toBe('access-of-r1');
  });

  it('brings back the refreshed pair, not the refresh token already spent', async () => {
    tokens.save(pair('r1'));
    await tokens.durable();
    const onDisk = storage.snapshot();
    tokens.save(pair('r2'));
    await tokens.durable();
    storage.crash(onDisk);
    expect(tokens.get()?.refresh).toBe('r1');

    await restoreTokens();
    expect(tokens.get()?.refresh).toBe('r2');
  });

  it('keeps a sign-out a sign-out', async () => {
    tokens.save(pair('r1'));
    await tokens.durable();
    const onDisk = storage.snapshot();
    tokens.clear();
    await tokens.durable();
    storage.crash(onDisk);
    expect(tokens.get()?.refresh).toBe('r1');

    await restoreTokens();
    expect(tokens.get()).toBeNull();
    expect(localStorage.getItem('relaypacs.tokens')).toBeNull();
  });

  it('keeps what localStorage holds when it is the newer, and makes it durable', async () => {
    // Written without the durable copy: by the app before it kept one, for instance.
    localStorage.setItem(
      'relaypacs.tokens',
      JSON.stringify({ access: 'access-of-r9', refresh: 'r9', expiresAt: Date.now() + 60_000 }),
    );
    await restoreTokens();
    expect(tokens.get()?.refresh).toBe('r9');

    storage.crash(new Map()); // all of localStorage lost
    await restoreTokens();
    expect(tokens.get()?.refresh).toBe('r9');
  });

  it('tells subscribers about a sign-in and a sign-out as before', () => {
    const seen: (string | null)[] = [];
    const unsubscribe = tokens.subscribe((value) => seen.push(value?.refresh ?? null));
    tokens.save(pair('r1'));
    tokens.clear();
    unsubscribe();
    expect(seen).toEqual(['r1', null]);
  });
});
