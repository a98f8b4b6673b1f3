import { useSyncExternalStore } from 'react';

import { acceptInstallOffer, currentInstallOffer, watchInstallOffer } from '@/lib/install-prompt';

/** The browser's install offer, kept until the user taps Install (see lib/install-prompt). */
export function useInstallPrompt(): { canInstall: boolean; install: () => Promise<void> } {
  const offer = useSyncExternalStore(watchInstallOffer, currentInstallOffer, () => null);
  return { canInstall: offer !== null, install: acceptInstallOffer };
}
