import { useState } from 'react';

import { Alert } from '@/components/alert';

import { ChangePasswordForm } from './change-password-form';

/** Settings: any user changes their password (every other device is then signed out). */
export function ChangePasswordPanel() {
  const [done, setDone] = useState(false);
  return (
    <section className="card" aria-labelledby="change-password-title">
      <h2 id="change-password-title">Change password</h2>
      <p>Changing it signs you out on your other devices; this one stays signed in.</p>
      {done ? <Alert tone="success">Your password is changed.</Alert> : null}
      <ChangePasswordForm currentLabel="Current password" submitLabel="Change password" onChanged={() => setDone(true)} />
    </section>
  );
}
