import axios, { AxiosError, type AxiosAdapter, type AxiosResponse, type InternalAxiosRequestConfig } from 'axios';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

import { api, onPasswordChangeRequired } from '@/lib/api-client';
import { toUserFacingError } from '@/lib/problem';
import { tokens } from '@/lib/tokens';
import { accessTokenOf } from '@/testing/access-token';
import { startSignedOut } from '@/testing/signed-out-device';

import { changePassword, login, PasswordChangedSignInAgainError, type User } from '../../api/auth';
import { mustChoosePassword } from '../password-change';

/** The gateway of one account, Alice's, made by an administrator with a one-time password. */
let password = 'One-time-pass-1';
let mustChange = true;
let issued = 0;
let ended = new Set<string>();
let loginAnswer: ((body: { username: string; password: string }) => [number, unknown]) | null = null;
const sent: { method: string; url: string; bearer: string; body: unknown }[] = [];

function alice(): User {
  return {
    id: 'id-of-alice',
    username: 'alice',
    email: 'alice@example.org',
    full_name: null,
    role: 'clinician',
    is_active: true,
    totp_enabled: false,
    must_change_password: mustChange,
    created_at: '2026-01-01T00:00:00Z',
    last_login_at: null,
  };
}

const gateway: AxiosAdapter = (config: InternalAxiosRequestConfig) => {
  const bearer = String(config.headers.get('Authorization') ?? '').replace(/^Bearer /, '');
  const body: unknown = typeof config.data === 'string' ? JSON.parse(config.data) : null;
  sent.push({ method: String(config.method), url: String(config.url), bearer, body });
  const answer = (status: number, data: unknown = {}): Promise<AxiosResponse> => {
    const response: AxiosResponse = { status, statusText: String(status), headers: {}, config, data };
    return status < 400
      ? Promise.resolve(response)
      : Promise.reject(new AxiosError(`status ${status}`, AxiosError.ERR_BAD_REQUEST, config, null, response));
  };
  const signedIn = bearer.startsWith('eyJ') && !ended.has(bearer);
  if (config.url === '/auth/login') {
    const input = body as { username: string; password: string };
    if (loginAnswer) {
      const [status, data] = loginAnswer(input);
      return answer(status, data);
    }
    if (input.password !== password) return answer(401, { code: 'invalid_credentials' });
    issued += 1;
    return answer(200, { access_token: accessTokenOf('id-of-alice', issued), refresh_token: `refresh-${issued}`, token_type: 'bearer', expires_in: 900 });
  }
  if (!signedIn) return answer(401, { code: 'token_revoked' });
  if (config.url === '/auth/me') return answer(200, alice());
  if (config.url === '/auth/password') {
    const change = body as { current_password: string; new_password: string };
    if (change.current_password !== password) return answer(403, { code: 'invalid_password', detail: 'The current password is wrong' });
    password = change.new_password;
    mustChange = false;
    // As the gateway does: every token issued under the old password ends now.
    for (let n = 1; n <= issued; n += 1) ended.add(accessTokenOf('id-of-alice', n));
    return answer(204, null);
  }
  if (mustChange) {
    return answer(403, { code: 'password_change_required', detail: 'Change the one-time password with POST /auth/password' });
  }
  return answer(200, { items: [] });
};

const realAdapters = [axios.defaults.adapter, api.defaults.adapter] as const;
axios.defaults.adapter = gateway;
api.defaults.adapter = gateway;
afterAll(() => {
  [axios.defaults.adapter, api.defaults.adapter] = realAdapters;
});

beforeEach(async () => {
  await startSignedOut();
  password = 'One-time-pass-1';
  mustChange = true;
  issued = 0;
  ended = new Set();
  loginAnswer = null;
  sent.length = 0;
});

const NEW_PASSWORD = 'My-own-passw0rd!';

describe('a user signed in with a one-time password', () => {
  it('is told to choose a password, in plain words, when the gateway refuses a request for it', async () => {
    await login({ username: 'alice', password: 'One-time-pass-1' });
    const heard = vi.fn();
    const stop = onPasswordChangeRequired(heard);
    const refused = await api.get('/uploads').catch((error: unknown) => error);
    stop();
    expect(heard).toHaveBeenCalledTimes(1);
    expect(toUserFacingError(refused).message).toBe('Choose a new password before you carry on.');
    expect(toUserFacingError(refused).message).not.toContain('POST');
  });

  it('changes it, is signed in again with the new one, and can use the app', async () => {
    await login({ username: 'alice', password: 'One-time-pass-1' });
    const before = tokens.access();
    const user = await changePassword({ username: 'alice', currentPassword: 'One-time-pass-1', newPassword: NEW_PASSWORD });

    expect(user.must_change_password).toBe(false);
    const change = sent.find((r) => r.url === '/auth/password');
    expect(change).toMatchObject({ method: 'post', bearer: before, body: { current_password: 'One-time-pass-1', new_password: NEW_PASSWORD } });
    expect(sent.filter((r) => r.url === '/auth/login').at(-1)?.body).toEqual({ username: 'alice', password: NEW_PASSWORD });
    expect(tokens.access()).not.toBe(before);
    expect(tokens.access()).not.toBeNull();
    await expect(api.get('/uploads').then((r) => r.status)).resolves.toBe(200);
  });

  it('keeps the session when the current password is wrong, and says so plainly', async () => {
    await login({ username: 'alice', password: 'One-time-pass-1' });
    const before = tokens.get();
    const refused = await changePassword({ username: 'alice', currentPassword: 'wrong', newPassword: NEW_PASSWORD }).catch((e: unknown) => e);
    expect(toUserFacingError(refused).code).toBe('invalid_password');
    expect(toUserFacingError(refused).message).toBe('The current password is wrong.');
    expect(tokens.get()).toEqual(before);
  });

  it('is signed out, with a word, when signing in again after the change fails', async () => {
    await login({ username: 'alice', password: 'One-time-pass-1' });
    loginAnswer = () => [401, { code: 'totp_required' }];
    const failed = await changePassword({ username: 'alice', currentPassword: 'One-time-pass-1', newPassword: NEW_PASSWORD }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PasswordChangedSignInAgainError);
    expect((failed as Error).message).toBe('Your password is changed. Sign in with your new password.');
    expect(tokens.get()).toBeNull();
  });
});

describe('when the app asks for a new password first', () => {
  const user = { must_change_password: false };
  it('asks when the profile says so, or when the gateway refused a request for it, and only when signed in', () => {
    expect(mustChoosePassword(true, { must_change_password: true }, false)).toBe(true);
    expect(mustChoosePassword(true, user, true)).toBe(true);
    expect(mustChoosePassword(true, null, true)).toBe(true);
    expect(mustChoosePassword(true, user, false)).toBe(false);
    expect(mustChoosePassword(false, { must_change_password: true }, true)).toBe(false);
  });
});
