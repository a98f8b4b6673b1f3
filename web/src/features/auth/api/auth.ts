import type { AxiosInstance } from 'axios';

import { api, refreshAccessToken, replaceSession, SessionEndedError } from '@/lib/api-client';
import { tokens, type TokenPair } from '@/lib/tokens';

export type Role = 'clinician' | 'radiographer' | 'radiologist' | 'admin';

export interface User {
  id: string;
  username: string;
  email: string;
  /** null until the user gives one in Settings */
  full_name: string | null;
  role: Role;
  is_active: boolean;
  totp_enabled: boolean;
  must_change_password: boolean;
  created_at: string;
  last_login_at: string | null;
}

export interface RegisterInput {
  username: string;
  email: string;
  password: string;
  role: 'clinician' | 'radiographer';
}

export interface LoginInput {
  username: string;
  password: string;
  totp_code?: string;
}

export interface TotpSetup {
  secret: string;
  otpauth_uri: string;
  /** an SVG QR code as a data: URI */
  qr_code: string;
}

export async function register(input: RegisterInput): Promise<User> {
  return (await api.post<User>('/auth/register', input)).data;
}

/**
 * Signs in and returns who signed in. `beforeSessionStarts` runs once the user is known and
 * before their tokens are kept: the app is signed in (in every tab, and after a browser killed
 * at any point) only from then on, so it can first clear what another user left on the device.
 */
export async function login(
  input: LoginInput,
  beforeSessionStarts?: (user: User) => Promise<void> | void,
  http: AxiosInstance = api,
): Promise<User> {
  const pair = (await http.post<TokenPair>('/auth/login', input)).data;
  const receivedAt = Date.now();
  const user = (await http.get<User>('/auth/me', { headers: { Authorization: `Bearer ${pair.access_token}` } })).data;
  await beforeSessionStarts?.(user);
  tokens.save(pair, receivedAt);
  // A browser killed right after signing in comes back signed in.
  await tokens.durable();
  return user;
}

export async function logout(): Promise<void> {
  const refresh = tokens.get()?.refresh;
  try {
    await api.post('/auth/logout', refresh ? { refresh_token: refresh } : {}, { timeout: 5_000 });
  } finally {
    // Its durable copy follows within milliseconds, unawaited: the caller's state changes must
    // land in the same render as this one, or the router takes it for a lapsed session.
    tokens.clear();
  }
}

export interface PasswordChangeInput {
  username: string;
  currentPassword: string;
  newPassword: string;
  /** the authenticator code for signing in again, when two-step verification is on */
  totpCode?: string;
}

/** The password is changed, but signing in again with it failed: the device is now signed out. */
export class PasswordChangedSignInAgainError extends Error {
  constructor(cause: unknown) {
    super('Your password is changed. Sign in with your new password.', { cause });
    this.name = 'PasswordChangedSignInAgainError';
  }
}

/**
 * Changes the signed-in user's password. The gateway then ends every sign-in of the user (this
 * one too), so the user is signed in again at once with the new password and carries on; their
 * other devices must sign in again. No refresh can start in between (see `replaceSession`).
 */
export async function changePassword(
  input: PasswordChangeInput,
  beforeSessionStarts?: (user: User) => Promise<void> | void,
): Promise<User> {
  // A token good for the next minute first: inside the lock nothing could refresh it.
  await refreshAccessToken();
  return replaceSession(async (http) => {
    const access = tokens.access();
    if (!access) throw new SessionEndedError();
    await http.post(
      '/auth/password',
      { current_password: input.currentPassword, new_password: input.newPassword },
      { headers: { Authorization: `Bearer ${access}` } },
    );
    try {
      const again: LoginInput = { username: input.username, password: input.newPassword };
      if (input.totpCode) again.totp_code = input.totpCode.replace(/\s/g, '');
      return await login(again, beforeSessionStarts, http);
    } catch (caught) {
      // The tokens kept here ended with the old password: nothing may use them any more.
      tokens.clear();
      throw new PasswordChangedSignInAgainError(caught);
    }
  });
}

export async function fetchMe(): Promise<User> {
  return (await api.get<User>('/auth/me')).data;
}

export async function setupTotp(): Promise<TotpSetup> {
  return (await api.post<TotpSetup>('/auth/2fa/setup')).data;
}

export async function enableTotp(code: string): Promise<string[]> {
  return (await api.post<{ recovery_codes: string[] }>('/auth/2fa/enable', { code })).data.recovery_codes;
}

export async function disableTotp(password: string, code: string): Promise<void> {
  await api.post('/auth/2fa/disable', { password, code });
}
