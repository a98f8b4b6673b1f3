/** The audit screen's filters and how an event is summarised in a table row. */
import type { AdminUser, AuditCriteria } from '../api/admin';

import { dayRange } from './time';

/** Actions the gateway records (the filter also takes any other exact name). */
export const KNOWN_ACTIONS = [
  'login_succeeded',
  'login_failed',
  'login_refused_locked',
  'account_locked',
  'logout',
  'logout_all',
  'password_changed',
  'password_change_refused',
  'recovery_code_used',
  'totp_setup_started',
  'totp_enabled',
  'totp_disabled',
  'totp_disable_refused',
  'refresh_token_reused',
  'refresh_token_replayed',
  'user_registered',
  'user_created',
  'user_disabled',
  'user_enabled',
  'role_changed',
  'role_change_refused',
  'email_changed',
  'full_name_changed',
  'personal_data_exported',
  'audit_exported',
  'audit_viewed',
  'analytics.exported',
  'upload.created',
  'upload.completed',
  'upload.cancelled',
  'upload.duplicate_forced',
  'upload.viewed',
  'upload.listed',
  'upload.requeued',
  'upload.token_issued',
  'report.updated',
  'report.viewed',
  'report.listed',
  'report.pdf_downloaded',
  'report.synced',
] as const;

export interface AuditForm {
  /** a username or an account id */
  user: string;
  /** whether the user is the one who acted or the one acted on */
  userIs: 'actor' | 'target';
  action: string;
  from: string;
  to: string;
}

export const EMPTY_FORM: AuditForm = { user: '', userIs: 'actor', action: '', from: '', to: '' };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value.trim());
}

/** The account a typed name means: an id as it is, else the exact username (any case). */
export function pickUser(typed: string, candidates: readonly Pick<AdminUser, 'id' | 'username'>[]): string | null {
  const wanted = typed.trim();
  if (isUuid(wanted)) return wanted.toLowerCase();
  const match = candidates.find((user) => user.username.toLowerCase() === wanted.toLowerCase());
  return match?.id ?? null;
}

/**
 * The API criteria for a filled-in form, given the resolved user id (null when the form names no
 * user); an error message when the form cannot be turned into a query.
 */
export function criteriaFor(form: AuditForm, userId: string | null): { criteria: AuditCriteria } | { error: string } {
  const range = dayRange(form.from, form.to);
  if ('error' in range) return range;
  const criteria: AuditCriteria = { ...range.range };
  const action = form.action.trim();
  if (action) {
    // eslint-disable-next-line no-control-regex
    if (action.length > 64 || /[\u0000-\u001f\u007f]/.test(action)) return { error: 'The action is not a valid name.' };
    criteria.action = action;
  }
  if (form.user.trim()) {
    if (!userId) return { error: `No account is named “${form.user.trim()}”.` };
    if (form.userIs === 'actor') criteria.actor_id = userId;
    else {
      criteria.target_type = 'user';
      criteria.target_id = userId;
    }
  }
  return { criteria };
}

/** The form as URL search parameters (so a filtered view can be reloaded or shared). */
export function formToParams(form: AuditForm, page: number): Record<string, string> {
  const params: Record<string, string> = {};
  if (form.user.trim()) params.user = form.user.trim();
  if (form.user.trim() && form.userIs === 'target') params.user_is = 'target';
  if (form.action.trim()) params.action = form.action.trim();
  if (form.from) params.from = form.from;
  if (form.to) params.to = form.to;
  if (page > 1) params.page = String(page);
  return params;
}

export function formFromParams(params: URLSearchParams): AuditForm {
  return {
    user: params.get('user') ?? '',
    userIs: params.get('user_is') === 'target' ? 'target' : 'actor',
    action: params.get('action') ?? '',
    from: params.get('from') ?? '',
    to: params.get('to') ?? '',
  };
}

/** `details` as short "key: value" text; nested values as compact JSON. */
export function describeDetails(details: Record<string, unknown>): string {
  return Object.entries(details)
    .filter(([, value]) => value !== null && value !== undefined && value !== '')
    .map(([key, value]) => `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(', ');
}
