import { useState } from 'react';

import { Dialog } from '@/components/dialog';
import { ChangePasswordPanel, useAuth, TwoFactorPanel } from '@/features/auth';
import { DataExportPanel, ProfilePanel, SignOutEverywherePanel } from '@/features/settings';
import { PreferencesPanel, unfinishedCount } from '@/features/upload';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { displayName } from '@/lib/display-name';

/** The settings screen: it composes panels of three features (profile, 2FA, uploads). */
export function SettingsPage() {
  useDocumentTitle('Settings');
  const { user, signOut, reloadUser } = useAuth();
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
    <section aria-labelledby="settings-title" className="settings">
      <h1 id="settings-title">Settings</h1>
      <ProfilePanel user={user} onSaved={reloadUser} />
      <ChangePasswordPanel />
      <TwoFactorPanel />
      <PreferencesPanel />
      {user ? <DataExportPanel username={user.username} /> : null}
      <SignOutEverywherePanel afterwards={signOut} unfinishedUploads={unfinishedCount} />
      <section className="card" aria-labelledby="sign-out-title">
        <h2 id="sign-out-title">This device</h2>
        {user ? (
          <p data-testid="signed-in-as">
            Signed in as <strong>{displayName(user)}</strong>
            {displayName(user) !== user.username ? ` (${user.username})` : null}.
          </p>
        ) : null}
        <p>Sign out here only; your other devices stay signed in.</p>
        <button type="button" className="button" onClick={() => void askSignOut()}>
          Sign out
        </button>
      </section>
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
