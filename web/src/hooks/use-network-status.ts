import { useSyncExternalStore } from 'react';

import { network, type NetworkStatus } from '@/lib/network';

const current = (): NetworkStatus => network.status;

export function useNetworkStatus(): NetworkStatus {
  // The third getter serves markup rendered outside a browser (the screens' tests).
  return useSyncExternalStore((onChange) => network.subscribe(onChange), current, current);
}
