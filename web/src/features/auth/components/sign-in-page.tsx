import { useEffect, useRef, useState, type SyntheticEvent } from 'react';
import { Link } from 'react-router';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { toUserFacingError } from '@/lib/problem';

import { useAuth } from '../hooks/auth-context';

import { PasswordField } from './password-field';

export function SignInPage() {
  const { signIn, notice } = useAuth();
  const [step, setStep] = useState<'password' | 'totp'>('password');
  useDocumentTitle(step === 'totp' ? 'Two-step verification' : 'Sign in');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const codeRef = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (step === 'totp') codeRef.current?.focus();
  }, [step]);


  async function submit(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn({ username: username.trim(), password, ...(step === 'totp' ? { totp_code: code.replace(/\s/g, '') } : {}) });
      // Nothing to do: the router sends a signed-in user on (see PublicOnly in the app).
    } catch (caught) {
      const failure = toUserFacingError(caught);
      if (failure.code === 'totp_required') {
        setStep('totp');
      } else if (failure.code === 'invalid_totp') {
        setError('That code is not valid. Use the newest code from your authenticator app.');
      } else if (failure.code === 'invalid_credentials') {
        setError('The username or password is wrong.');
      } else {
        setError(failure.message);
      }
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card card--narrow" aria-labelledby="sign-in-title">
      <h1 id="sign-in-title">{step === 'totp' ? 'Two-step verification' : 'Sign in'}</h1>
      <form onSubmit={(e) => void submit(e)} noValidate>
        {error ? <Alert>{error}</Alert> : notice ? <Alert tone="info">{notice}</Alert> : null}
        {step === 'password' ? (
          <>
            <Field
              label="Username or email"
              name="username"
              autoComplete="username"
              autoCapitalize="off"
              required
              value={username}
              onChange={(e) => setUsername(e.target.value)}
            />
            <PasswordField
              label="Password"
              name="password"
              autoComplete="current-password"
              required
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </>
        ) : (
          <>
            <p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
            <Field
              ref={codeRef}
              label="Authentication code"
              name="totp_code"
              inputMode="numeric"
              autoComplete="one-time-code"
              required
              value={code}
              onChange={(e) => setCode(e.target.value)}
            />
          </>
        )}
        <button type="submit" className="button button--primary button--block" disabled={busy}>
          {busy ? 'Signing in…' : step === 'totp' ? 'Verify' : 'Sign in'}
        </button>
        {step === 'totp' ? (
          <button type="button" className="button button--ghost button--block" onClick={() => setStep('password')}>
            Back
          </button>
        ) : null}
      </form>
      <p className="card__footer">
        New here? <Link to="/register">Create an account</Link>
      </p>
    </section>
  );
}
