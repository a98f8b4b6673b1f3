import { useState } from 'react';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { toUserFacingError } from '@/lib/problem';

import { signOutEverywhere } from '../api/settings';

/**
 * End every sign-in of the account, on every device (a lost phone, a shared computer). This
 * device signs out too; `afterwards` clears it the way a normal sign-out does.
 */
export function SignOutEverywherePanel({ afterwards, unfinishedUploads }: {
  afterwards: () => Promise<void>;
  /** how many uploads on this device have not reached the gateway (they are deleted) */
  unfinishedUploads: () => Promise<number>;
}) {
  const [confirming, setConfirming] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function ask(): Promise<void> {
    setError(null);
    setConfirming(await unfinishedUploads().catch(() => 0));
  }

  async function run(): Promise<void> {
    setConfirming(null);
    setBusy(true);
    try {
      await signOutEverywhere();
    } catch (caught) {
      setError(toUserFacingError(caught).message);
      setBusy(false);
      return;
    }
    await afterwards();
  }

  return (
    <section className="card" aria-labelledby="everywhere-title">
      <h2 id="everywhere-title">Devices</h2>
      <p>Lost a phone or signed in on a shared computer? End every sign-in of your account, on every device, this one included.</p>
      {error ? <Alert>{error}</Alert> : null}
      <button type="button" className="button button--danger" onClick={() => void ask()} disabled={busy}>
        Sign out everywhere
      </button>
      <Dialog
        open={confirming !== null}
        title="Sign out on every device?"
        onClose={() => setConfirming(null)}
        actions={
          <>
            <button type="button" className="button button--danger" onClick={() => void run()}>
              Sign out on every device
            </button>
            <button type="button" className="button" onClick={() => setConfirming(null)}>
              Cancel
            </button>
          </>
        }
      >
        <p>Every device, this one included, must sign in again with your password.</p>
        {confirming ? (
          <p>
            {confirming} {confirming === 1 ? 'study on this device has' : 'studies on this device have'} not reached the gateway yet and{' '}
            {confirming === 1 ? 'is' : 'are'} deleted.
          </p>
        ) : null}
      </Dialog>
    </section>
  );
}
