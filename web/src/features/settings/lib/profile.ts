import type { UserFacingError } from '@/lib/problem';

import type { Profile, ProfileChanges } from '../api/settings';

import { checkEmail } from './export';

/** The gateway's limit, in characters (code points) of the trimmed name. */
export const MAX_FULL_NAME_LENGTH = 200;

export interface ProfileForm {
  fullName: string;
  email: string;
}

export type ProfileErrors = Partial<Record<keyof ProfileForm, string>>;

/** C0, DEL and C1: what the gateway calls control characters. */
function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true;
  }
  return false;
}
const TOO_LONG = `At most ${MAX_FULL_NAME_LENGTH} characters.`;
const NOT_ONE_LINE = 'One line, without tabs or other control characters.';

export function initialProfileForm(user: Profile): ProfileForm {
  return { fullName: user.full_name ?? '', email: user.email };
}

/** What the gateway would refuse in a full name, said before sending (empty is fine: it removes the name). */
export function checkFullName(value: string): string | null {
  // Before trimming, as the gateway does: a pasted trailing tab is refused there too.
  if (hasControlCharacter(value)) return NOT_ONE_LINE;
  // Code points, as the gateway counts: an emoji is one character, not two UTF-16 units.
  if (Array.from(value.trim()).length > MAX_FULL_NAME_LENGTH) return TOO_LONG;
  return null;
}

/** The PATCH body (only what changed, trimmed) and what to correct first; nothing is sent while there are errors. */
export function planProfileSave(form: ProfileForm, user: Profile): { changes: ProfileChanges; errors: ProfileErrors } {
  const changes: ProfileChanges = {};
  const errors: ProfileErrors = {};
  const nameError = checkFullName(form.fullName);
  const fullName = form.fullName.trim();
  if (nameError) errors.fullName = nameError;
  else if (fullName !== (user.full_name ?? '')) changes.full_name = fullName;
  const email = form.email.trim();
  if (email.toLowerCase() !== user.email.toLowerCase()) {
    const emailError = checkEmail(email, user.email);
    if (emailError) errors.email = emailError;
    else changes.email = email;
  }
  return { changes, errors };
}

export function savedMessage(changes: ProfileChanges): string {
  if (changes.email !== undefined && changes.full_name !== undefined) return 'Profile saved.';
  if (changes.email !== undefined) return 'Email address saved.';
  return changes.full_name ? 'Full name saved.' : 'Full name removed.';
}

interface FieldFault {
  loc: unknown[];
  type: string;
}

function faultsOf(failure: UserFacingError): FieldFault[] {
  const errors = failure.problem?.errors;
  if (!Array.isArray(errors)) return [];
  return errors.flatMap((e: unknown) => {
    if (typeof e !== 'object' || e === null) return [];
    const { loc, type } = e as { loc?: unknown; type?: unknown };
    return Array.isArray(loc) ? [{ loc, type: typeof type === 'string' ? type : '' }] : [];
  });
}

/** A refusal of the gateway put next to the field it is about; null when it is about no one field. */
export function fieldErrorsFromFailure(failure: UserFacingError): ProfileErrors | null {
  if (failure.code === 'email_taken') return { email: 'Another account uses this email address.' };
  if (failure.code !== 'validation_error') return null;
  const errors: ProfileErrors = {};
  for (const fault of faultsOf(failure)) {
    if (fault.loc.includes('full_name')) errors.fullName = fault.type === 'string_too_long' ? TOO_LONG : NOT_ONE_LINE;
    else if (fault.loc.includes('email')) errors.email = 'Enter an email address like name@hospital.org.';
  }
  return Object.keys(errors).length > 0 ? errors : null;
}
