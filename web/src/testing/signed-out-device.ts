import { restoreTokens, tokens } from '@/lib/tokens';

import { installMemoryStorage, type MemoryStorage } from './memory-storage';

/**
 * A page load on a device with nobody signed in: a fresh localStorage beside the IndexedDB copy
 * of the tokens that the previous test left, restored first as the app does at start-up.
 * Without the restore, a copy written a millisecond "ahead" of the clock (two changes within one
 * millisecond) would outrank the next test's own changes, and `restoreTokens` would bring it back.
 */
export async function startSignedOut(): Promise<MemoryStorage> {
  const storage = installMemoryStorage();
  await restoreTokens();
  tokens.clear();
  await tokens.durable();
  return storage;
}
