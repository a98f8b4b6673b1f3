import { useEffect, useRef } from 'react';

import { useDocumentTitle } from '@/hooks/use-document-title';
import { displayName } from '@/lib/display-name';

import { useAuth } from '../hooks/auth-context';

import { ChangePasswordForm } from './change-password-form';

/**
 * Shown instead of any other screen while the account still has a one-time password (set by an
 * administrator): the gateway refuses everything else until the user chooses their own.
 */
export function ChoosePasswordPage() {
  useDocumentTitle('Choose your password');
  const { user, signOut } = useAuth();
  const headingRef = useRef<HTMLHeadingElement>(null);
  useEffect(() => headingRef.current?.focus(), []);
  return (
    <section className="card card--narrow" aria-labelledby="choose-password-title">
      <h1 id="choose-password-title" ref={headingRef} tabIndex={-1}>
        Choose your password
      </h1>
      <p>
        {user ? <>Welcome, {displayName(user)}. </> : null}Your account was set up with a one-time password. Choose your own
        password to carry on; you stay signed in.
      </p>
      <ChangePasswordForm currentLabel="One-time password" submitLabel="Save and continue" />
      <p className="card__footer">
        <button type="button" className="button button--ghost" onClick={() => void signOut()}>
          Sign out
        </button>
      </p>
    </section>
  );
}
