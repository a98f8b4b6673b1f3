import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';

import { onPasswordChangeRequired, startSilentRefresh } from '@/lib/api-client';
import { toUserFacingError } from '@/lib/problem';
import { tokens } from '@/lib/tokens';

import { changePassword as postPasswordChange, fetchMe, login, logout, PasswordChangedSignInAgainError, type LoginInput, type User } from '../api/auth';
import { mustChoosePassword } from '../lib/password-change';

const USER_KEY = 'relaypacs.user';

interface AuthContextValue {
  signedIn: boolean;
  /** the user signed out themselves (not an expired session): do not send them back later */
  signedOutOnPurpose: boolean;
  /** the last known profile: kept on the device so the app opens offline */
  user: User | null;
  /** the user must choose a new password before anything else (a one-time password) */
  mustChangePassword: boolean;
  /** a word for the sign-in screen (e.g. after a password change that could not sign in again) */
  notice: string | null;
  signIn: (input: LoginInput) => Promise<User>;
  /** changes the password, then signs in again with it (the gateway ends every sign-in) */
  changePassword: (input: { currentPassword: string; newPassword: string; totpCode?: string }) => Promise<void>;
  signOut: () => Promise<void>;
  reloadUser: () => Promise<void>;
}

const AuthContext = createContext<AuthContextValue | null>(null);

function cachedUser(): User | null {
  try {
    const raw = localStorage.getItem(USER_KEY);
    return raw ? (JSON.parse(raw) as User) : null;
  } catch {
    return null;
  }
}

function remember(user: User | null): void {
  if (user) localStorage.setItem(USER_KEY, JSON.stringify(user));
  else localStorage.removeItem(USER_KEY);
}

export function AuthProvider({ children, beforeSignIn, beforeSignOut }: {
  children: ReactNode;
  /** runs at every sign-in, once the user is known and before their session starts (another user may take the device) */
  beforeSignIn?: (user: User) => Promise<void> | void;
  beforeSignOut?: () => Promise<void> | void;
}) {
  const [signedIn, setSignedIn] = useState(() => tokens.get() !== null);
  const [user, setUser] = useState<User | null>(() => (tokens.get() ? cachedUser() : null));
  const [signedOutOnPurpose, setSignedOutOnPurpose] = useState(false);
  const [refusedForPassword, setRefusedForPassword] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => onPasswordChangeRequired(() => setRefusedForPassword(true)), []);

  useEffect(() => {
    const stop = startSilentRefresh();
    const unsubscribe = tokens.subscribe((value) => setSignedIn(value !== null));
    return () => {
      stop();
      unsubscribe();
    };
  }, []);

  const reloadUser = useCallback(async () => {
    try {
      const fresh = await fetchMe();
      remember(fresh);
      setUser(fresh);
    } catch (error) {
      // Offline: keep the cached profile. Refused: the interceptor already signed us out.
      if (!toUserFacingError(error).network && !tokens.get()) setUser(null);
    }
  }, []);

  useEffect(() => {
    if (!signedIn) return;
    let stopped = false;
    fetchMe()
      .then((fresh) => {
        if (stopped) return;
        remember(fresh);
        setUser(fresh);
      })
      .catch(() => undefined); // offline: the cached profile stays
    return () => {
      stopped = true;
    };
  }, [signedIn]);

  const signIn = useCallback(
    async (input: LoginInput) => {
      const fresh = await login(input, beforeSignIn);
      remember(fresh);
      setSignedOutOnPurpose(false);
      setRefusedForPassword(false);
      setNotice(null);
      setUser(fresh);
      setSignedIn(true);
      return fresh;
    },
    [beforeSignIn],
  );

  const changePassword = useCallback(
    async (input: { currentPassword: string; newPassword: string; totpCode?: string }) => {
      const username = user?.username ?? (await fetchMe()).username;
      try {
        const fresh = await postPasswordChange({ username, ...input }, beforeSignIn);
        remember(fresh);
        setUser(fresh);
        setRefusedForPassword(false);
        setSignedIn(true);
      } catch (caught) {
        if (caught instanceof PasswordChangedSignInAgainError) {
          // Signed out by the change itself: the sign-in screen says what happened.
          remember(null);
          setUser(null);
          setRefusedForPassword(false);
          setNotice(caught.message);
          setSignedIn(false);
        }
        throw caught;
      }
    },
    [user, beforeSignIn],
  );

  const signOut = useCallback(async () => {
    await beforeSignOut?.();
    try {
      await logout();
    } catch {
      // Offline sign-out still ends the session on this device; the refresh token expires.
    }
    remember(null);
    setRefusedForPassword(false);
    setSignedOutOnPurpose(true);
    setUser(null);
    setSignedIn(false);
  }, [beforeSignOut]);

  const mustChangePassword = mustChoosePassword(signedIn, user, refusedForPassword);
  const value = useMemo(
    () => ({ signedIn, signedOutOnPurpose, user, mustChangePassword, notice, signIn, changePassword, signOut, reloadUser }),
    [signedIn, signedOutOnPurpose, user, mustChangePassword, notice, signIn, changePassword, signOut, reloadUser],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthContextValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error('useAuth needs an <AuthProvider>');
  return value;
}
