import type { AxiosAdapter, AxiosResponse, InternalAxiosRequestConfig } from 'axios';
import Dexie from 'dexie';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';

import { login, type User } from '@/features/auth/api/auth';
import { database } from '@/features/upload/api/uploads';
import { unfinishedCount } from '@/features/upload';
import type { UploadJob } from '@/features/upload/engine/types';
import { api } from '@/lib/api-client';
import { deviceOwner, restoreTokens, tokens } from '@/lib/tokens';
import { type MemoryStorage } from '@/testing/memory-storage';
import { startSignedOut } from '@/testing/signed-out-device';

import { handOverDevice } from '../device-data';

/** Two clinicians who share one tablet. */
const USERS: Record<string, User> = Object.fromEntries(
  ['alice', 'bob'].map((username) => [
    username,
    {
      id: `id-of-${username}`,
      username,
      email: `${username}@example.org`,
      full_name: null,
      role: 'clinician',
      is_active: true,
      totp_enabled: false,
      must_change_password: false,
      created_at: '2026-01-01T00:00:00Z',
      last_login_at: null,
    },
  ]),
);

let storage: MemoryStorage;
let signIns = 0;

/** The gateway's sign-in and profile answers: the profile is the one of the bearer token's user. */
const gateway: AxiosAdapter = (config: InternalAxiosRequestConfig) => {
  const answer = (status: number, data: unknown): Promise<AxiosResponse> =>
    Promise.resolve({ status, statusText: String(status), headers: {}, config, data });
  if (config.method === 'post' && config.url === '/auth/login') {
    const { username } = JSON.parse(String(config.data)) as { username: string };
    signIns += 1;
    return answer(200, {
      access_token: `access-of-${username}-${signIns}`,
      refresh_token: `refresh-of-${username}-${signIns}`,
      token_type: 'bearer',
      expires_in: 900,
    });
  }
  if (config.method === 'get' && config.url === '/auth/me') {
    const bearer = String(config.headers.get('Authorization'));
    const user = Object.values(USERS).find((candidate) => bearer.startsWith(`Bearer access-of-${candidate.username}-`));
    return user ? answer(200, user) : answer(401, { code: 'invalid_token' });
  }
  return answer(404, {});
};
const realAdapter = api.defaults.adapter;
api.defaults.adapter = gateway;
afterAll(() => {
  api.defaults.adapter = realAdapter;
});

async function signIn(username: string): Promise<User> {
  return login({ username, password: 'a password' }, handOverDevice);
}

/** A study queued on the device, its file with it, as the upload screen leaves it. */
async function queueStudy(id: string): Promise<void> {
  const job: UploadJob = {
    id,
    createdAt: Date.now(),
    state: 'waiting',
    study: { patient_name: 'DOE^JANE', study_date: '2026-01-02', modality: 'CT', service_level: 'routine' },
    files: [{ index: 0, name: 'image.dcm', size: 4 }],
    totalBytes: 4,
    forceUpload: false,
  };
  await database.transaction('rw', database.jobs, database.blobs, async () => {
    await database.blobs.put({ jobId: id, index: 0, blob: new Blob(['DICM']) });
    await database.jobs.put(job);
  });
}

async function queuedIds(): Promise<string[]> {
  return (await database.jobs.toArray()).map((job) => job.id);
}

/**
 * Alice signs in and queues a study; the browser is killed, and localStorage comes back as it
 * was on disk before her sign-in (`before`). Her session then lapses without a sign-out (the
 * refresh token expired while the device was off), which leaves her queue where it is.
 */
async function aliceQueuesThenTheBrowserIsKilled(before: Map<string, string>): Promise<void> {
  await signIn('alice');
  await queueStudy('study-of-alice');
  storage.crash(before);
  await restoreTokens();
  expect(tokens.get()?.refresh).toMatch(/^refresh-of-alice-/);
  tokens.clear();
  await tokens.durable();
}

/** Bob signed in and out on this device earlier: localStorage on disk names him as its last user. */
async function bobUsedTheDeviceFirst(): Promise<void> {
  await signIn('bob');
  // Where versions before the owner in IndexedDB kept it (and compared it at the next sign-in).
  localStorage.setItem('relaypacs.user.last', USERS.bob!.id);
  tokens.clear();
  await tokens.durable();
}

beforeEach(async () => {
  storage = await startSignedOut();
  // A device as it is first used: nothing queued, nobody recorded as its owner.
  await database.transaction('rw', database.jobs, database.blobs, database.history, async () => {
    await database.jobs.clear();
    await database.blobs.clear();
    await database.history.clear();
  });
  const session = await new Dexie('relaypacs-session').open();
  await session.table('entries').delete('owner');
  session.close();
});

describe('a shared device after a killed browser lost localStorage', () => {
  it("does not show or send the previous user's queue when another user signs in", async () => {
    await aliceQueuesThenTheBrowserIsKilled(new Map()); // a device first used by Alice

    await signIn('bob');
    expect(await queuedIds()).toEqual([]);
    expect(await database.blobs.count()).toBe(0);
    expect(await unfinishedCount()).toBe(0);
    expect(await deviceOwner()).toBe(USERS.bob!.id);
  });

  it('clears the queue for the other user even when localStorage came back naming that user', async () => {
    await bobUsedTheDeviceFirst();
    await aliceQueuesThenTheBrowserIsKilled(storage.snapshot());

    await signIn('bob');
    expect(await queuedIds()).toEqual([]);
  });

  it("keeps a user's own queue when the same user signs in again", async () => {
    await aliceQueuesThenTheBrowserIsKilled(new Map());

    await signIn('alice');
    expect(await queuedIds()).toEqual(['study-of-alice']);
    expect(await database.blobs.count()).toBe(1);
  });

  it("keeps a user's own queue even when localStorage came back naming another user", async () => {
    await bobUsedTheDeviceFirst();
    await aliceQueuesThenTheBrowserIsKilled(storage.snapshot());

    await signIn('alice');
    expect(await queuedIds()).toEqual(['study-of-alice']);
  });
});

describe('a sign-in hands the device over before the session starts', () => {
  it('clears a queue whose owner is not known', async () => {
    // Queued before the owner was recorded on the device (an older version of the app).
    await queueStudy('study-of-someone');

    await signIn('bob');
    expect(await queuedIds()).toEqual([]);
  });

  it('keeps the tokens out of storage until the previous user’s data is gone', async () => {
    await aliceQueuesThenTheBrowserIsKilled(new Map());
    const seen: { tokens: unknown; queued: string[] }[] = [];

    await login({ username: 'bob', password: 'a password' }, async (user) => {
      seen.push({ tokens: tokens.get(), queued: await queuedIds() });
      await handOverDevice(user);
    });
    // Until then a killed browser comes back signed out, not signed in as Bob over Alice's queue.
    expect(seen).toEqual([{ tokens: null, queued: ['study-of-alice'] }]);
    expect(tokens.get()?.refresh).toMatch(/^refresh-of-bob-/);
  });

  it('does not start the session when the device could not be handed over', async () => {
    await aliceQueuesThenTheBrowserIsKilled(new Map());

    await expect(
      login({ username: 'bob', password: 'a password' }, () => Promise.reject(new Error('IndexedDB refused'))),
    ).rejects.toThrow('IndexedDB refused');
    storage.crash(new Map());
    await restoreTokens();
    expect(tokens.get()).toBeNull();
  });
});
