import { describe, expect, it } from 'vitest';

import { EngineClient } from '../../engine/client';
import type { EngineEvent } from '../../engine/types';
import { onHistoryChange, type LiveSource } from '../history-changes';

/** The engine's worker as the client sees it: it posts events, the client listens. */
function fakeWorker() {
  let listener: ((message: MessageEvent<EngineEvent>) => void) | null = null;
  return {
    postMessage: () => undefined,
    addEventListener: (_type: string, handler: (message: MessageEvent<EngineEvent>) => void) => {
      listener = handler;
    },
    post: (event: EngineEvent) => listener?.({ data: event } as MessageEvent<EngineEvent>),
  };
}

function fakeLive() {
  const handlers = new Map<string, Set<(data: unknown) => void>>();
  const opens = new Set<() => void>();
  const source: LiveSource = {
    subscribe: (type, handler) => {
      const set = handlers.get(type) ?? new Set();
      handlers.set(type, set);
      set.add(handler);
      return () => set.delete(handler);
    },
    onOpen: (listener) => {
      opens.add(listener);
      return () => opens.delete(listener);
    },
  };
  return {
    source,
    event: (type: string, data: unknown) => handlers.get(type)?.forEach((handler) => handler(data)),
    open: () => opens.forEach((listener) => listener()),
  };
}

describe('the upload history is fetched again', () => {
  it('when a study of this device is accepted, an upload changes state, or the stream reconnects', () => {
    const worker = fakeWorker();
    const client = new EngineClient(worker as unknown as Worker, () => undefined);
    const live = fakeLive();
    let changes = 0;
    const stop = onHistoryChange(client, live.source, () => (changes += 1));

    worker.post({ type: 'submitted', jobId: 'j1', serverId: 'u1' });
    live.event('upload_state', { upload_id: 'u1', state: 'delivered' });
    live.open();
    live.event('notification', { id: 'n1' });
    expect(changes).toBe(3);

    stop();
    worker.post({ type: 'submitted', jobId: 'j2', serverId: 'u2' });
    live.event('upload_state', { upload_id: 'u2', state: 'queued' });
    live.open();
    expect(changes).toBe(3);
  });
});
