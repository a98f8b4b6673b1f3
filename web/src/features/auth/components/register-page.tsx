import { useState, type SyntheticEvent } from 'react';
import { Link } from 'react-router';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { toUserFacingError } from '@/lib/problem';

import { register } from '../api/auth';
import { useAuth } from '../hooks/auth-context';
import { failedRules } from '../lib/password-rules';

import { PasswordChecklist } from './password-checklist';
import { PasswordField } from './password-field';

const USERNAME = /^[A-Za-z0-9_.-]{3,50}$/;

export function RegisterPage() {
  useDocumentTitle('Create an account');
  const { signIn } = useAuth();
  const [username, setUsername] = useState('');
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<'clinician' | 'radiographer'>('clinician');
  const [password, setPassword] = useState('');
  const [submitted, setSubmitted] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const usernameError = submitted && !USERNAME.test(username) ? '3–50 letters, digits, dots, dashes or underscores.' : null;
  const emailError = submitted && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email) ? 'Enter a valid email address.' : null;
  const unmet = failedRules(password, username);
  const passwordError = submitted && unmet.length > 0 ? 'The password does not meet every rule yet.' : null;

  async function submit(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    setSubmitted(true);
    setError(null);
    if (!USERNAME.test(username) || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email) || unmet.length > 0) return;
    setBusy(true);
    try {
      await register({ username, email, password, role });
      await signIn({ username, password });
      // The router sends the now signed-in user on.
    } catch (caught) {
      const failure = toUserFacingError(caught);
      setError(
        failure.status === 409
          ? 'That username or email is already registered.'
          : failure.code === 'common_password'
            ? 'That password is on lists of common passwords. Choose another.'
            : failure.message,
      );
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card card--narrow" aria-labelledby="register-title">
      <h1 id="register-title">Create an account</h1>
      <form onSubmit={(e) => void submit(e)} noValidate>
        {error ? <Alert>{error}</Alert> : null}
        <Field
          label="Username"
          name="username"
          autoComplete="username"
          autoCapitalize="off"
          required
          value={username}
          error={usernameError}
          onChange={(e) => setUsername(e.target.value)}
        />
        <Field
          label="Email"
          name="email"
          type="email"
          inputMode="email"
          autoComplete="email"
          required
          value={email}
          error={emailError}
          onChange={(e) => setEmail(e.target.value)}
        />
        <fieldset className="field">
          <legend>Role</legend>
          <div className="choices">
            {(['clinician', 'radiographer'] as const).map((value) => (
              <label key={value} className="choice">
                <input type="radio" name="role" value={value} checked={role === value} onChange={() => setRole(value)} />
                {value === 'clinician' ? 'Clinician' : 'Radiographer / technologist'}
              </label>
            ))}
          </div>
        </fieldset>
        <PasswordField
          label="Password"
          name="new-password"
          autoComplete="new-password"
          required
          value={password}
          describedBy="password-rules"
          error={passwordError}
          onChange={(e) => setPassword(e.target.value)}
        />
        <PasswordChecklist id="password-rules" password={password} username={username} />
        <button type="submit" className="button button--primary button--block" disabled={busy}>
          {busy ? 'Creating account…' : 'Create account'}
        </button>
      </form>
      <p className="card__footer">
        Already registered? <Link to="/sign-in">Sign in</Link>
      </p>
    </section>
  );
}
