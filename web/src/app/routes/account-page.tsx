import { useState } from 'react';

import { Dialog } from '@/components/dialog';
import { useAuth, TwoFactorPanel } from '@/features/auth';
import { PreferencesPanel, unfinishedCount } from '@/features/upload';
import { useDocumentTitle } from '@/hooks/use-document-title';

export function AccountPage() {
  useDocumentTitle('Account');
  const { user, signOut } = useAuth();
  const [pending, setPending] = useState<number | null>(null);

  async function leave(): Promise<void> {
    await signOut();
  }

  async function askSignOut(): Promise<void> {
    const count = await unfinishedCount();
    if (count > 0) setPending(count);
    else await leave();
  }

  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Account</h1>
      <div className="card">
        <h2>Profile</h2>
        {user ? (
          <dl className="facts">
            <dt>Username</dt>
            <dd data-testid="username">{user.username}</dd>
            <dt>Email</dt>
            <dd>{user.email}</dd>
            <dt>Role</dt>
            <dd>{user.role}</dd>
          </dl>
        ) : (
          <p>Profile not loaded yet.</p>
        )}
        <button type="button" className="button" onClick={() => void askSignOut()}>
          Sign out
        </button>
      </div>
      <TwoFactorPanel />
      <PreferencesPanel />
      <Dialog
        open={pending !== null}
        title="Uploads are not finished"
        onClose={() => setPending(null)}
        actions={
          <>
            <button
              type="button"
              className="button button--danger"
              onClick={() => {
                setPending(null);
                void leave();
              }}
            >
              Sign out and delete them
            </button>
            <button type="button" className="button" onClick={() => setPending(null)}>
              Stay signed in
            </button>
          </>
        }
      >
        <p>
          {pending} {pending === 1 ? 'study has' : 'studies have'} not reached the gateway yet. Signing out deletes
          {pending === 1 ? ' it' : ' them'} from this device.
        </p>
      </Dialog>
    </section>
  );
}
