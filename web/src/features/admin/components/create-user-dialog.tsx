import { useId, useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { Field } from '@/components/field';
import { toUserFacingError } from '@/lib/problem';

import { createUser, ROLES, type AdminUser, type Role } from '../api/admin';
import { formText } from '../lib/form';

/** An account made by an administrator: any role, a temporary password to hand over. */
export function CreateUserDialog({ open, onClose, onCreated }: { open: boolean; onClose: () => void; onCreated: (user: AdminUser) => void }) {
  const formId = useId();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [round, setRound] = useState(0);

  async function submit(event: SyntheticEvent<HTMLFormElement>): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      const user = await createUser({
        username: formText(form, 'username').trim(),
        email: formText(form, 'email').trim(),
        password: formText(form, 'password'),
        role: (formText(form, 'role') || 'clinician') as Role,
        must_change_password: form.get('must_change_password') === 'on',
      });
      setRound((value) => value + 1); // a fresh, empty form next time
      onCreated(user);
    } catch (reason) {
      setError(toUserFacingError(reason).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Dialog
      open={open}
      title="New user"
      onClose={() => {
        setError(null);
        onClose();
      }}
      actions={
        <>
          <button type="submit" form={formId} className="button button--primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create user'}
          </button>
          <button type="button" className="button" onClick={onClose}>
            Cancel
          </button>
        </>
      }
    >
      <form id={formId} key={round} onSubmit={(event) => void submit(event)}>
        {error ? <Alert>{error}</Alert> : null}
        <Field label="Username" name="username" required minLength={3} maxLength={50} pattern="[A-Za-z0-9_.\-]+" autoComplete="off" hint="3–50 letters, digits, _ . -" />
        <Field label="Email" name="email" type="email" required autoComplete="off" />
        <Field label="Temporary password" name="password" type="password" required autoComplete="new-password" hint="Give it to the person; they choose their own at first sign-in." />
        <div className="field">
          <label htmlFor={`${formId}-role`}>Role</label>
          <select id={`${formId}-role`} name="role" defaultValue="clinician">
            {ROLES.map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </div>
        <label className="admin-checkbox">
          <input type="checkbox" name="must_change_password" defaultChecked />
          Must choose a new password at first sign-in
        </label>
      </form>
    </Dialog>
  );
}
