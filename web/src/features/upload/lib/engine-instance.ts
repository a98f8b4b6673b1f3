/**
 * The one engine client of this tab: the worker starts on first use, is fed the sign-in token
 * and the network state, and is shut down (with the device's data) on sign-out, or (without)
 * when another tab hands the device to someone else.
 */
import { refreshAccessToken } from '@/lib/api-client';
import { network } from '@/lib/network';
import { userOfToken } from '@/lib/session-user';
import { tokens } from '@/lib/tokens';

import { database } from '../api/uploads';
import { EngineClient } from '../engine/client';
import { dexieJobStore, type JobStore } from '../engine/db';

let worker: Worker | null = null;
let client: EngineClient | null = null;
let unsubscribers: (() => void)[] = [];

export const jobStore: JobStore = dexieJobStore(database);

export function engine(): EngineClient {
  if (client) return client;
  worker = new Worker(new URL('../engine/worker.ts', import.meta.url), { type: 'module', name: 'relaypacs-upload-engine' });
  const created = new EngineClient(worker, () => {
    void refreshAccessToken({ force: true }).then((token) => created.send({ type: 'token', token }));
  });
  client = created;
  created.send({ type: 'online', online: network.status !== 'offline' });
  const access = tokens.access();
  created.send({ type: 'token', token: access });
  // The queue is the signed-in user's (the sign-in's hand-over saw to it): the engine refuses to
  // send it with anyone else's token, should one reach it.
  created.send({ type: 'start', owner: userOfToken(access) });
  unsubscribers = [
    tokens.subscribe((value) => created.send({ type: 'token', token: value?.access ?? null })),
    network.subscribe((status) => created.send({ type: 'online', online: status !== 'offline' })),
    // The engine's requests failing (in its worker): let the header check the gateway too.
    created.subscribe(() => {
      if (created.snapshot.jobs.some((job) => job.progress?.retrying)) network.reportUnreachable();
    }),
  ];
  if ('serviceWorker' in navigator) {
    // Background Sync fired while the tab was asleep: nudge the engine to try now.
    const onMessage = (event: MessageEvent): void => {
      if ((event.data as { type?: string } | null)?.type === 'relaypacs-resume-uploads') {
        created.send({ type: 'online', online: navigator.onLine });
      }
    };
    navigator.serviceWorker.addEventListener('message', onMessage);
    unsubscribers.push(() => navigator.serviceWorker.removeEventListener('message', onMessage));
  }
  return created;
}

/** Ask the service worker for a Background Sync wake-up once the network returns. */
export async function requestBackgroundSync(): Promise<void> {
  try {
    const registration = await navigator.serviceWorker.ready;
    const sync = (registration as ServiceWorkerRegistration & { sync?: { register(tag: string): Promise<void> } }).sync;
    await sync?.register('relaypacs-uploads');
  } catch {
    // Not supported (Firefox, Safari): the online event does the same while the tab is open.
  }
}

/**
 * Stops this tab's engine at once: its worker ends, with whatever request it had in flight, and
 * its Web Lock goes to another tab's engine. The queue stays on the device.
 */
export function stopEngine(): void {
  for (const unsubscribe of unsubscribers) unsubscribe();
  unsubscribers = [];
  worker?.terminate();
  worker = null;
  client = null;
}

/** Stops the engine and deletes every queued study and cached history from this device. */
export async function clearDeviceData(): Promise<void> {
  stopEngine();
  await database.transaction('rw', database.jobs, database.blobs, database.history, async () => {
    await database.jobs.clear();
    await database.blobs.clear();
    await database.history.clear();
  });
}

/** Queued studies not yet handed to the gateway (signing out would lose them). */
export async function unfinishedCount(): Promise<number> {
  return database.jobs.where('state').noneOf(['submitted', 'cancelled']).count();
}
