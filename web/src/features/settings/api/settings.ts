import { api } from '@/lib/api-client';

import { exportFilename } from '../lib/export';

export interface Profile {
  id: string;
  username: string;
  email: string;
  full_name: string | null;
  role: string;
  totp_enabled: boolean;
  created_at: string;
  last_login_at: string | null;
}

/** What a user may change about themselves; a field left out stays as it is, `full_name: ''` removes the name. */
export interface ProfileChanges {
  email?: string;
  full_name?: string;
}

/** PATCH /users/me with only what changed. */
export async function updateProfile(changes: ProfileChanges): Promise<Profile> {
  return (await api.patch<Profile>('/users/me', changes)).data;
}

/** Everything the gateway holds about the user (GDPR), as a JSON file to save. */
export async function fetchMyData(username: string): Promise<{ blob: Blob; filename: string }> {
  const response = await api.get<unknown>('/users/me/export');
  const blob = new Blob([JSON.stringify(response.data, null, 2)], { type: 'application/json' });
  return { blob, filename: exportFilename(username, new Date()) };
}

/** End every sign-in of the user, this one included (POST /auth/logout-all). */
export async function signOutEverywhere(): Promise<void> {
  await api.post('/auth/logout-all', undefined, { timeout: 10_000 });
}
