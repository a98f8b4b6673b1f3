import axios, { AxiosError, CanceledError, type AxiosAdapter, type AxiosResponse, type InternalAxiosRequestConfig } from 'axios';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

import { accessTokenOf } from '@/testing/access-token';
import { startSignedOut } from '@/testing/signed-out-device';

import { api, REFRESH_TIMEOUT_MS, refreshAccessToken } from '../api-client';
import { tokens, type TokenPair } from '../tokens';

/**
 * The gateway, answering only when the test says so: each request waits in `pending` until the
 * test answers it, so a sign-out and another user's sign-in can land while it is in flight.
 */
interface Pending {
  config: InternalAxiosRequestConfig;
  answer(status: number, data?: unknown): void;
}
let pending: Pending[] = [];
const sent: { url: string | undefined; bearer: string }[] = [];

const gateway: AxiosAdapter = (config) =>
  new Promise<AxiosResponse>((resolve, reject) => {
    sent.push({ url: config.url, bearer: String(config.headers.get('Authorization') ?? '') });
    // As the browser's adapter does: an aborted request fails at once.
    const signal = config.signal as AbortSignal | undefined;
    signal?.addEventListener('abort', () => reject(new CanceledError(undefined, undefined, config)));
    pending.push({
      config,
      answer(status, data = {}) {
        const response: AxiosResponse = { status, statusText: String(status), headers: {}, config, data };
        if (status < 400) resolve(response);
        else reject(new AxiosError(`status ${status}`, AxiosError.ERR_BAD_REQUEST, config, null, response));
      },
    });
  });

const realAdapters = [axios.defaults.adapter, api.defaults.adapter] as const;
axios.defaults.adapter = gateway;
api.defaults.adapter = gateway;
afterAll(() => {
  [axios.defaults.adapter, api.defaults.adapter] = realAdapters;
});

function pairOf(user: string, n: number): TokenPair {
  return {
    access_token: accessTokenOf(user, n),
    refresh_token: `refresh-of-${user}-${n}`,
    token_type: 'bearer',
    expires_in: 900,
  };
}

/** The next request the app sends, once it has reached the gateway. */
async function nextRequest(): Promise<Pending> {
  for (let tries = 0; tries < 100; tries += 1) {
    const request = pending.shift();
    if (request) return request;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  throw new Error('no request reached the gateway');
}

/** Resolves once the app sends another request (or, if it sends none, after a while). */
async function sentAgain(): Promise<string> {
  for (let tries = 0; tries < 100; tries += 1) {
    if (pending.length > 0) return 'sent again';
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return 'nothing sent';
}

/** Alice signs out and Bob signs in, in this tab: neither waits for the refresh lock. */
function bobTakesOver(): void {
  tokens.clear();
  tokens.save(pairOf('bob', 1));
}

beforeEach(async () => {
  await startSignedOut();
  pending = [];
  sent.length = 0;
  tokens.save(pairOf('alice', 1));
});

describe('a refresh that another user signed in during', () => {
  it('refreshes and retries a refused request as before when nothing else changed', async () => {
    const request = api.get<string>('/studies');
    (await nextRequest()).answer(401);
    const refresh = await nextRequest();
    expect(refresh.config.url).toMatch(/\/auth\/refresh$/);
    refresh.answer(200, pairOf('alice', 2));
    (await nextRequest()).answer(200, 'the studies');

    expect((await request).data).toBe('the studies');
    expect(tokens.get()?.refresh).toBe('refresh-of-alice-2');
    expect(sent.at(-1)?.bearer).toBe(`Bearer ${accessTokenOf('alice', 2)}`);
  });

  it('does not sign the next user out when the gateway refuses the previous one', async () => {
    const refreshed = refreshAccessToken({ force: true });
    const refresh = await nextRequest();
    bobTakesOver();
    refresh.answer(401, { code: 'invalid_refresh_token' });

    expect(await refreshed).toBeNull();
    expect(tokens.get()?.refresh).toBe('refresh-of-bob-1');
  });

  it('does not put the previous user’s new tokens over the next user’s', async () => {
    const refreshed = refreshAccessToken({ force: true });
    const refresh = await nextRequest();
    bobTakesOver();
    refresh.answer(200, pairOf('alice', 2));

    expect(await refreshed).toBeNull();
    expect(tokens.get()?.refresh).toBe('refresh-of-bob-1');
    expect(tokens.access()).toBe(accessTokenOf('bob', 1));
  });

  it('does not retry the previous user’s refused request with the next user’s token', async () => {
    const request = api.post('/studies/s1/share', { with: 'someone' });
    const first = await nextRequest();
    // Alice's sign-out revoked her access token before the gateway got to this request.
    bobTakesOver();
    first.answer(401);

    const outcome = await Promise.race([
      request.then(
        () => 'answered',
        (error: unknown) => `refused with ${String((error as AxiosError).response?.status)}`,
      ),
      sentAgain(),
    ]);
    expect(outcome).toBe('refused with 401');
    expect(sent.map((request) => request.bearer)).not.toContain(`Bearer ${accessTokenOf('bob', 1)}`);
    expect(tokens.get()?.refresh).toBe('refresh-of-bob-1');
  });

  it('still retries with the same user’s token that replaced the refused one', async () => {
    const request = api.get<string>('/studies');
    const first = await nextRequest();
    tokens.save(pairOf('alice', 2)); // refreshed by another tab meanwhile
    first.answer(401);
    (await nextRequest()).answer(200, 'the studies');

    expect((await request).data).toBe('the studies');
    expect(sent.at(-1)?.bearer).toBe(`Bearer ${accessTokenOf('alice', 2)}`);
  });
});

describe('a refresh the gateway never answers', () => {
  it('gives up after a while, keeps the tokens and does not hold up the next refresh', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true, toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const refreshed = refreshAccessToken({ force: true });
      await nextRequest(); // lost on the way: no answer ever comes
      await vi.advanceTimersByTimeAsync(REFRESH_TIMEOUT_MS);

      expect(await refreshed).toBeNull();
      // Offline is not signed out: the same session is kept for the next try.
      expect(tokens.get()?.refresh).toBe('refresh-of-alice-1');

      const again = refreshAccessToken({ force: true });
      (await nextRequest()).answer(200, pairOf('alice', 2));
      expect(await again).toBe(accessTokenOf('alice', 2));
    } finally {
      vi.useRealTimers();
    }
  });
});
