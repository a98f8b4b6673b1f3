import { useId, useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { toUserFacingError } from '@/lib/problem';

import { PasswordChangedSignInAgainError } from '../api/auth';
import { useAuth } from '../hooks/auth-context';
import { failedRules } from '../lib/password-rules';

import { PasswordChecklist } from './password-checklist';
import { PasswordField } from './password-field';

/** Problem codes about the new password (the rest are shown above the form). */
const NEW_PASSWORD_CODES = new Set(['weak_password', 'common_password', 'password_too_long', 'password_contains_username']);

interface ChangePasswordFormProps {
  /** what the current password is called: "One-time password" on first sign-in */
  currentLabel: string;
  submitLabel: string;
  /** runs once the new password is set and the user is signed in with it */
  onChanged?: () => void;
}

/** Current password, new password with the policy checklist, and (2FA on) a code to sign in again. */
export function ChangePasswordForm({ currentLabel, submitLabel, onChanged }: ChangePasswordFormProps) {
  const { user, changePassword } = useAuth();
  const rulesId = useId();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [code, setCode] = useState('');
  const [submitted, setSubmitted] = useState(false);
  const [failure, setFailure] = useState<{ field: 'current' | 'new' | null; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const username = user?.username ?? '';
  const needsCode = user?.totp_enabled ?? false;

  const unmet = failedRules(next, username);
  const currentError = submitted && current === '' ? 'Enter your current password.' : failure?.field === 'current' ? failure.message : null;
  const newError =
    submitted && unmet.length > 0 ? 'The new password does not meet every rule yet.' : failure?.field === 'new' ? failure.message : null;
  const codeError = submitted && needsCode && code.trim() === '' ? 'Enter the code from your authenticator app.' : null;

  async function submit(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    setSubmitted(true);
    setFailure(null);
    if (current === '' || unmet.length > 0 || (needsCode && code.trim() === '')) return;
    setBusy(true);
    try {
      await changePassword({ currentPassword: current, newPassword: next, ...(needsCode ? { totpCode: code } : {}) });
      setCurrent('');
      setNext('');
      setCode('');
      setSubmitted(false);
      onChanged?.();
    } catch (caught) {
      // Signed out by the change: the sign-in screen takes over and says why.
      if (caught instanceof PasswordChangedSignInAgainError) return;
      const problem = toUserFacingError(caught);
      const field = problem.code === 'invalid_password' ? 'current' : problem.code && NEW_PASSWORD_CODES.has(problem.code) ? 'new' : null;
      setFailure({ field, message: problem.message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <form onSubmit={(e) => void submit(e)} noValidate>
      {failure && failure.field === null ? <Alert>{failure.message}</Alert> : null}
      <PasswordField
        label={currentLabel}
        name="current-password"
        autoComplete="current-password"
        required
        value={current}
        error={currentError}
        onChange={(e) => setCurrent(e.target.value)}
      />
      <PasswordField
        label="New password"
        name="new-password"
        autoComplete="new-password"
        required
        value={next}
        describedBy={rulesId}
        error={newError}
        onChange={(e) => setNext(e.target.value)}
      />
      <PasswordChecklist id={rulesId} password={next} username={username} />
      {needsCode ? (
        <Field
          label="Code from your authenticator app"
          name="totp_code"
          inputMode="numeric"
          autoComplete="one-time-code"
          required
          value={code}
          error={codeError}
          hint="You are signed in again with the new password; this code is needed for that."
          onChange={(e) => setCode(e.target.value)}
        />
      ) : null}
      <button type="submit" className="button button--primary" disabled={busy}>
        {busy ? 'Saving…' : submitLabel}
      </button>
    </form>
  );
}
