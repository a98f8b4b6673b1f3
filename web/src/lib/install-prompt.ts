/**
 * The browser's offer to install the app (`beforeinstallprompt`), caught from the first moment.
 *
 * The event fires once per page load, as soon as the browser decides the app qualifies, which
 * can be before React has mounted (main.tsx first restores the sign-in from IndexedDB): a
 * listener added by a component would miss it, and the Install button would not appear on
 * that load. So main.tsx calls {@link catchInstallOffers} before anything else, and the
 * component reads the kept offer.
 */

export interface InstallOffer extends Event {
  prompt(): Promise<void>;
  userChoice: Promise<{ outcome: 'accepted' | 'dismissed' }>;
}

let offer: InstallOffer | null = null;
const watchers = new Set<() => void>();

function set(next: InstallOffer | null): void {
  offer = next;
  for (const watcher of watchers) watcher();
}

/** Start keeping the offer `target` (the window) makes; returns how to stop (for tests). */
export function catchInstallOffers(target: EventTarget): () => void {
  const onOffer = (event: Event): void => {
    // Keeps the browser's own mini-infobar away: the app shows its Install button instead.
    event.preventDefault();
    set(event as InstallOffer);
  };
  const onInstalled = (): void => set(null);
  target.addEventListener('beforeinstallprompt', onOffer);
  target.addEventListener('appinstalled', onInstalled);
  return () => {
    target.removeEventListener('beforeinstallprompt', onOffer);
    target.removeEventListener('appinstalled', onInstalled);
  };
}

/** The offer kept now (null: none, or already used). */
export function currentInstallOffer(): InstallOffer | null {
  return offer;
}

/** Called whenever the offer changes (for useSyncExternalStore); returns the unsubscribe. */
export function watchInstallOffer(watcher: () => void): () => void {
  watchers.add(watcher);
  return () => watchers.delete(watcher);
}

/** Shows the browser's install dialog; an offer can be used once. */
export async function acceptInstallOffer(): Promise<void> {
  const used = offer;
  if (!used) return;
  await used.prompt();
  await used.userChoice;
  set(null);
}
