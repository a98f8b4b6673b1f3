/** The gateway's admin API: accounts, deliveries (every user's uploads) and the audit log. */
import { api } from '@/lib/api-client';

import { filenameFromDisposition } from '../lib/download';

export type Role = 'clinician' | 'radiographer' | 'radiologist' | 'admin';
export const ROLES: readonly Role[] = ['clinician', 'radiographer', 'radiologist', 'admin'];

export interface AdminUser {
  id: string;
  username: string;
  email: string;
  full_name: string | null;
  role: Role;
  is_active: boolean;
  totp_enabled: boolean;
  must_change_password: boolean;
  created_at: string;
  updated_at: string;
  last_login_at: string | null;
}

export interface Page<T> {
  total: number;
  items: T[];
}

export interface UserQuery {
  q?: string;
  role?: Role;
  is_active?: boolean;
  limit: number;
  offset: number;
}

export interface NewUser {
  username: string;
  email: string;
  password: string;
  role: Role;
  must_change_password: boolean;
}

export interface Delivery {
  upload_id: string;
  owner_id: string;
  owner_username: string;
  state: string;
  study_date: string;
  modality: string;
  service_level: 'stat' | 'emergency' | 'routine';
  study_description: string | null;
  file_count: number;
  instance_count: number;
  bytes_total: number;
  failure_reason: string | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryQuery {
  states: readonly string[];
  limit: number;
  offset: number;
}

export interface Requeued {
  upload_id: string;
  state: string;
  job_id: string;
}

/** What the admin screens read of one upload: its timeline and the PACS's answers, no patient data. */
export interface DeliveryTrace {
  state: string;
  failure_reason: string | null;
  timeline: { state: string; at: string; detail: string | null }[];
  instances: { forward_status: string; forward_reason: string | null }[];
}

export interface AuditEvent {
  id: string;
  occurred_at: string;
  actor_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  ip_address: string | null;
  user_agent: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** The audit API's filters (already resolved: ids and ISO 8601 times). */
export interface AuditCriteria {
  actor_id?: string;
  action?: string;
  target_type?: string;
  target_id?: string;
  since?: string;
  until?: string;
}

// FastAPI reads repeated keys (`state=a&state=b`), not axios's default `state[]=a`.
const REPEATED_KEYS = { indexes: null } as const;

export async function listUsers(query: UserQuery): Promise<Page<AdminUser>> {
  return (await api.get<Page<AdminUser>>('/admin/users', { params: query })).data;
}

export async function createUser(input: NewUser): Promise<AdminUser> {
  return (await api.post<AdminUser>('/admin/users', input)).data;
}

export async function updateUser(id: string, change: { role?: Role; is_active?: boolean }): Promise<AdminUser> {
  return (await api.patch<AdminUser>(`/admin/users/${encodeURIComponent(id)}`, change)).data;
}

export async function listDeliveries(query: DeliveryQuery): Promise<Page<Delivery>> {
  const params = { state: query.states.length > 0 ? [...query.states] : undefined, limit: query.limit, offset: query.offset };
  return (await api.get<Page<Delivery>>('/admin/uploads', { params, paramsSerializer: REPEATED_KEYS })).data;
}

export async function requeueDelivery(uploadId: string): Promise<Requeued> {
  return (await api.post<Requeued>(`/admin/uploads/${encodeURIComponent(uploadId)}/requeue`)).data;
}

export async function getDeliveryTrace(uploadId: string): Promise<DeliveryTrace> {
  const body = (await api.get<DeliveryTrace>(`/uploads/${encodeURIComponent(uploadId)}`)).data;
  // Keep only what the screen shows: the full status also carries the patient's name.
  return {
    state: body.state,
    failure_reason: body.failure_reason,
    timeline: body.timeline.map(({ state, at, detail }) => ({ state, at, detail })),
    instances: body.instances.map(({ forward_status, forward_reason }) => ({ forward_status, forward_reason })),
  };
}

export async function listAuditEvents(criteria: AuditCriteria, limit: number, offset: number): Promise<Page<AuditEvent>> {
  return (await api.get<Page<AuditEvent>>('/admin/audit', { params: { ...criteria, limit, offset } })).data;
}

export async function exportAuditEvents(criteria: AuditCriteria): Promise<{ blob: Blob; filename: string }> {
  const response = await api.get<Blob>('/admin/audit/export.csv', { params: criteria, responseType: 'blob', timeout: 120_000 });
  const disposition = response.headers['content-disposition'] as string | undefined;
  return { blob: response.data, filename: filenameFromDisposition(disposition, 'relaypacs_audit.csv') };
}
