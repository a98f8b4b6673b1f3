import { useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { formatDateTime } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';

import { updateEmail, type Profile } from '../api/settings';
import { checkEmail } from '../lib/export';

const ROLE_LABELS: Record<string, string> = {
  clinician: 'Clinician',
  radiographer: 'Radiographer',
  radiologist: 'Radiologist',
  admin: 'Administrator',
};

/** Who the user is; the email address can be changed here (roles are given by administrators). */
export function ProfilePanel({ user, onSaved }: { user: Profile | null; onSaved: () => Promise<void> }) {
  const [email, setEmail] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<{ tone: 'success' | 'error'; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  if (!user) {
    return (
      <section className="card" aria-labelledby="profile-title">
        <h2 id="profile-title">Profile</h2>
        <p>Profile not loaded yet.</p>
      </section>
    );
  }
  const value = email ?? user.email;

  async function save(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    if (!user) return;
    const problem = checkEmail(value, user.email);
    setError(problem);
    setMessage(null);
    if (problem) return;
    setBusy(true);
    try {
      await updateEmail(value.trim());
      await onSaved();
      setEmail(null);
      setMessage({ tone: 'success', text: 'Email address saved.' });
    } catch (caught) {
      const failure = toUserFacingError(caught);
      if (failure.code === 'email_taken') setError('Another account uses this email address.');
      else setMessage({ tone: 'error', text: failure.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="profile-title">
      <h2 id="profile-title">Profile</h2>
      <dl className="facts">
        <dt>Username</dt>
        <dd data-testid="username">{user.username}</dd>
        <dt>Role</dt>
        <dd>{ROLE_LABELS[user.role] ?? user.role}</dd>
        <dt>Member since</dt>
        <dd>{formatDateTime(user.created_at)}</dd>
        <dt>Last sign-in</dt>
        <dd>{formatDateTime(user.last_login_at)}</dd>
      </dl>
      {message ? <Alert tone={message.tone}>{message.text}</Alert> : null}
      <form onSubmit={(e) => void save(e)} noValidate>
        <Field
          label="Email"
          type="email"
          name="email"
          autoComplete="email"
          value={value}
          error={error}
          onChange={(e) => {
            setEmail(e.target.value);
            setError(null);
          }}
          required
        />
        <button type="submit" className="button button--primary" disabled={busy}>
          Save email
        </button>
      </form>
    </section>
  );
}
