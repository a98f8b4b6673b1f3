import { api } from '@/lib/api-client';
import { tokens, type TokenPair } from '@/lib/tokens';

export type Role = 'clinician' | 'radiographer' | 'radiologist' | 'admin';

export interface User {
  id: string;
  username: string;
  email: string;
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
): Promise<User> {
  const pair = (await api.post<TokenPair>('/auth/login', input)).data;
  const receivedAt = Date.now();
  const user = (await api.get<User>('/auth/me', { headers: { Authorization: `Bearer ${pair.access_token}` } })).data;
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
