import { useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { toUserFacingError } from '@/lib/problem';

import { disableTotp, enableTotp, setupTotp, type TotpSetup } from '../api/auth';
import { useAuth } from '../hooks/auth-context';

import { PasswordField } from './password-field';

/** Turn two-step verification (TOTP) on or off. */
export function TwoFactorPanel() {
  const { user, reloadUser } = useAuth();
  const [setup, setSetup] = useState<TotpSetup | null>(null);
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const enabled = user?.totp_enabled ?? false;

  async function run(task: () => Promise<void>): Promise<void> {
    setBusy(true);
    setError(null);
    try {
      await task();
    } catch (caught) {
      const failure = toUserFacingError(caught);
      setError(failure.code === 'invalid_totp' ? 'That code is not valid. Use the newest one.' : failure.message);
    } finally {
      setBusy(false);
    }
  }

  const start = (): Promise<void> => run(async () => setSetup(await setupTotp()));

  const enable = (event: SyntheticEvent): Promise<void> => {
    event.preventDefault();
    return run(async () => {
      setRecovery(await enableTotp(code.replace(/\s/g, '')));
      setSetup(null);
      setCode('');
      await reloadUser();
    });
  };

  const disable = (event: SyntheticEvent): Promise<void> => {
    event.preventDefault();
    return run(async () => {
      await disableTotp(password, code.replace(/\s/g, ''));
      setPassword('');
      setCode('');
      setRecovery(null);
      await reloadUser();
    });
  };

  return (
    <section className="card" aria-labelledby="two-factor-title">
      <h2 id="two-factor-title">Two-step verification</h2>
      {error ? <Alert>{error}</Alert> : null}
      {recovery ? (
        <Alert tone="success">
          <p>
            <strong>Two-step verification is on.</strong> Keep these recovery codes somewhere safe; each works once if
            you lose your phone.
          </p>
          <ul className="recovery-codes" data-testid="recovery-codes">
            {recovery.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </Alert>
      ) : null}
      {enabled ? (
        <form onSubmit={(e) => void disable(e)}>
          <p>Signing in asks for a code from your authenticator app.</p>
          <PasswordField label="Password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
          <Field label="Authentication code" inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required />
          <button type="submit" className="button" disabled={busy}>
            Turn off two-step verification
          </button>
        </form>
      ) : setup ? (
        <form onSubmit={(e) => void enable(e)}>
          <ol className="steps">
            <li>Scan this code with an authenticator app (or type the key).</li>
            <li>Enter the 6-digit code it shows.</li>
          </ol>
          <img className="qr" src={setup.qr_code} alt="QR code for the authenticator app" width={192} height={192} />
          <p>
            Key: <code className="secret" data-testid="totp-secret">{setup.secret}</code>
          </p>
          <Field label="Code from the app" name="totp_code" inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required />
          <button type="submit" className="button button--primary" disabled={busy}>
            Turn on
          </button>
        </form>
      ) : (
        <>
          <p>Protect your account with a code from an authenticator app on your phone.</p>
          <button type="button" className="button button--primary" onClick={() => void start()} disabled={busy}>
            Set up two-step verification
          </button>
        </>
      )}
    </section>
  );
}
