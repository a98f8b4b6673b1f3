import { useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { formatDateTime } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';

import { updateProfile, type Profile } from '../api/settings';
import { fieldErrorsFromFailure, initialProfileForm, planProfileSave, savedMessage, type ProfileErrors, type ProfileForm } from '../lib/profile';

const ROLE_LABELS: Record<string, string> = {
  clinician: 'Clinician',
  radiographer: 'Radiographer',
  radiologist: 'Radiologist',
  admin: 'Administrator',
};

/** Who the user is; the full name and email address can be changed here (roles are given by administrators). */
export function ProfilePanel({ user, onSaved }: { user: Profile | null; onSaved: () => Promise<void> }) {
  // null: not edited yet, so the fields follow the profile as it reloads.
  const [form, setForm] = useState<ProfileForm | null>(null);
  const [errors, setErrors] = useState<ProfileErrors>({});
  const [message, setMessage] = useState<{ tone: 'success' | 'error' | 'info'; text: string } | null>(null);
  const [busy, setBusy] = useState(false);

  if (!user) {
    return (
      <section className="card" aria-labelledby="profile-title">
        <h2 id="profile-title">Profile</h2>
        <p>Profile not loaded yet.</p>
      </section>
    );
  }
  const values = form ?? initialProfileForm(user);

  function edit(field: keyof ProfileForm, value: string): void {
    setForm({ ...values, [field]: value });
    setErrors((current) => ({ ...current, [field]: undefined }));
  }

  async function save(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    if (!user) return;
    const { changes, errors: problems } = planProfileSave(values, user);
    setErrors(problems);
    setMessage(null);
    if (Object.keys(problems).length > 0) return;
    if (Object.keys(changes).length === 0) {
      setMessage({ tone: 'info', text: 'Nothing to save: the profile is as shown.' });
      return;
    }
    setBusy(true);
    try {
      await updateProfile(changes);
      await onSaved();
      setForm(null);
      setMessage({ tone: 'success', text: savedMessage(changes) });
    } catch (caught) {
      const failure = toUserFacingError(caught);
      const onFields = fieldErrorsFromFailure(failure);
      if (onFields) setErrors(onFields);
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
          label="Full name"
          name="full_name"
          autoComplete="name"
          hint="Optional. Shown instead of your username; leave it empty to remove it."
          value={values.fullName}
          error={errors.fullName}
          onChange={(e) => edit('fullName', e.target.value)}
        />
        <Field
          label="Email"
          type="email"
          name="email"
          autoComplete="email"
          value={values.email}
          error={errors.email}
          onChange={(e) => edit('email', e.target.value)}
          required
        />
        <button type="submit" className="button button--primary" disabled={busy}>
          Save profile
        </button>
      </form>
    </section>
  );
}
