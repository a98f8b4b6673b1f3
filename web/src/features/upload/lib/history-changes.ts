/**
 * When the upload history shown may be out of date: a study this device sent was accepted
 * (it leaves "On this device" and belongs in the history), the gateway says an upload changed
 * state, or the live stream reconnected after missing some of those.
 */
import type { LiveEventType } from '@/lib/live-events';

import type { EngineClient } from '../engine/client';

export interface LiveSource {
  subscribe(type: LiveEventType, handler: (data: unknown) => void): () => void;
  onOpen(listener: () => void): () => void;
}

export function onHistoryChange(client: Pick<EngineClient, 'onSubmitted'>, live: LiveSource, changed: () => void): () => void {
  const offs = [client.onSubmitted(() => changed()), live.subscribe('upload_state', () => changed()), live.onOpen(changed)];
  return () => {
    for (const off of offs) off();
  };
}
