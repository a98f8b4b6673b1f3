import { api } from '@/lib/api-client';

import { RelayDatabase } from '../engine/db';
import { parseUploadStatus, type ServerUploadStatus } from '../engine/protocol';
import type { ServiceLevel } from '../engine/types';

export interface Preferences {
  default_service_level: ServiceLevel;
  chunk_size: number;
  duplicate_warnings: boolean;
}

export interface UploadSummary {
  upload_id: string;
  state: string;
  patient_name: string;
  study_date: string;
  modality: string;
  service_level: ServiceLevel;
  study_description: string | null;
  file_count: number;
  instance_count: number;
  bytes_total: number;
  bytes_received: number;
  created_at: string;
}

/** The device's database, shared with the engine worker (IndexedDB allows both). */
export const database = new RelayDatabase();

export async function getPreferences(): Promise<Preferences> {
  return (await api.get<Preferences>('/users/me/preferences')).data;
}

export async function savePreferences(preferences: Preferences): Promise<Preferences> {
  return (await api.put<Preferences>('/users/me/preferences', preferences)).data;
}

/** The newest uploads; kept in IndexedDB so the history reads offline. */
export async function listUploads(limit = 50): Promise<UploadSummary[]> {
  const page = (await api.get<{ items: UploadSummary[] }>('/uploads', { params: { limit } })).data;
  await database.transaction('rw', database.history, async () => {
    await database.history.clear();
    await database.history.bulkPut(
      page.items.map((item) => ({ upload_id: item.upload_id, state: item.state, created_at: item.created_at, summary: { ...item } })),
    );
  });
  return page.items;
}

export async function cachedUploads(): Promise<UploadSummary[]> {
  const entries = await database.history.orderBy('created_at').reverse().toArray();
  return entries.map((entry) => entry.summary as unknown as UploadSummary);
}

/** One upload as the history on this device last saw it (null: not in it). */
export async function cachedUpload(uploadId: string): Promise<UploadSummary | null> {
  const entry = await database.history.get(uploadId);
  return entry ? ({ ...entry.summary, state: entry.state } as unknown as UploadSummary) : null;
}

export async function getUploadStatus(uploadId: string): Promise<ServerUploadStatus> {
  const status = parseUploadStatus((await api.get<unknown>(`/uploads/${encodeURIComponent(uploadId)}`)).data);
  // Remember the latest state for the offline history (the list shows the summary's).
  const entry = await database.history.get(uploadId);
  if (entry) await database.history.put({ ...entry, state: status.state, summary: { ...entry.summary, state: status.state } });
  return status;
}
