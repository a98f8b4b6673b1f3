import { useSyncExternalStore } from 'react';

import type { EngineClient, EngineSnapshot } from '../engine/client';
import { engine } from '../lib/engine-instance';

export function useEngine(): { client: EngineClient; snapshot: EngineSnapshot } {
  const client = engine();
  const snapshot = useSyncExternalStore(client.subscribe, () => client.snapshot);
  return { client, snapshot };
}
