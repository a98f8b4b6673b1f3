import { afterEach, describe, expect, it } from 'vitest';

import { acceptInstallOffer, catchInstallOffers, currentInstallOffer, watchInstallOffer } from '../install-prompt';

function offerEvent(choices: string[]): Event {
  const event = new Event('beforeinstallprompt', { cancelable: true });
  return Object.assign(event, {
    prompt: () => {
      choices.push('prompted');
      return Promise.resolve();
    },
    userChoice: Promise.resolve({ outcome: 'accepted' as const }),
  });
}

describe('the install offer', () => {
  let stop: (() => void) | undefined;
  afterEach(() => {
    stop?.();
    stop = undefined;
  });

  it('is kept when it comes before any component asks for it, and used once', async () => {
    const page = new EventTarget();
    stop = catchInstallOffers(page);
    const choices: string[] = [];
    const event = offerEvent(choices);
    // Fired while the app is still restoring the sign-in: nothing on screen listens yet.
    page.dispatchEvent(event);
    expect(event.defaultPrevented).toBe(true);

    const changes: string[] = [];
    const unwatch = watchInstallOffer(() => changes.push(currentInstallOffer() ? 'offered' : 'gone'));
    expect(currentInstallOffer()).toBe(event);

    await acceptInstallOffer();
    expect(choices).toEqual(['prompted']);
    expect(currentInstallOffer()).toBeNull();
    expect(changes).toEqual(['gone']);
    await acceptInstallOffer(); // nothing left to prompt with
    expect(choices).toEqual(['prompted']);
    unwatch();
  });

  it('is dropped once the app is installed', () => {
    const page = new EventTarget();
    stop = catchInstallOffers(page);
    page.dispatchEvent(offerEvent([]));
    expect(currentInstallOffer()).not.toBeNull();
    page.dispatchEvent(new Event('appinstalled'));
    expect(currentInstallOffer()).toBeNull();
  });
});
