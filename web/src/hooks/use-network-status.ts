import { useSyncExternalStore } from 'react';

import { network, type NetworkStatus } from '@/lib/network';

export function useNetworkStatus(): NetworkStatus {
  return useSyncExternalStore(
    (onChange) => network.subscribe(onChange),
    () => network.status,
  );
}
