import { describe, expect, it } from 'vitest';

import type { UserFacingError } from '@/lib/problem';

import type { Profile } from '../../api/settings';
import { checkFullName, fieldErrorsFromFailure, initialProfileForm, planProfileSave, savedMessage } from '../profile';

const JANE: Profile = {
  id: 'id-of-jane',
  username: 'jdoe',
  email: 'jane@example.org',
  full_name: 'Jane Doe',
  role: 'clinician',
  totp_enabled: false,
  created_at: '2026-01-01T00:00:00Z',
  last_login_at: null,
};

function refused(code: string, errors?: unknown): UserFacingError {
  return { status: 422, code, message: 'refused', problem: { code, errors }, network: false, retryAfter: null };
}

describe('the profile form', () => {
  it('starts from the profile, an unset name as an empty field', () => {
    expect(initialProfileForm(JANE)).toEqual({ fullName: 'Jane Doe', email: 'jane@example.org' });
    expect(initialProfileForm({ ...JANE, full_name: null }).fullName).toBe('');
  });

  it('sends only what changed, trimmed', () => {
    expect(planProfileSave({ fullName: '  Jane Q. Doe ', email: ' JANE@example.org ' }, JANE)).toEqual({
      changes: { full_name: 'Jane Q. Doe' },
      errors: {},
    });
    expect(planProfileSave({ fullName: 'Jane Doe', email: ' new@example.org ' }, JANE)).toEqual({
      changes: { email: 'new@example.org' },
      errors: {},
    });
    expect(planProfileSave(initialProfileForm(JANE), JANE)).toEqual({ changes: {}, errors: {} });
  });

  it('removes the name when the field is emptied, and sends nothing for a name never set', () => {
    expect(planProfileSave({ fullName: '   ', email: JANE.email }, JANE).changes).toEqual({ full_name: '' });
    expect(planProfileSave({ fullName: ' ', email: JANE.email }, { ...JANE, full_name: null }).changes).toEqual({});
  });

  it('refuses what the gateway would, before sending anything', () => {
    expect(planProfileSave({ fullName: 'Jane\tDoe', email: '' }, JANE)).toEqual({
      changes: {},
      errors: { fullName: 'One line, without tabs or other control characters.', email: 'Enter an email address.' },
    });
  });

  it('counts characters as the gateway does, after trimming', () => {
    expect(checkFullName(`  ${'é'.repeat(200)}  `)).toBeNull();
    expect(checkFullName('😀'.repeat(200))).toBeNull(); // 400 UTF-16 units, 200 characters
    expect(checkFullName('x'.repeat(201))).toBe('At most 200 characters.');
  });

  it('refuses control characters anywhere, even where trimming would drop them', () => {
    for (const name of ['Jane Doe\n', '\tJane', 'Jane\u0000Doe', 'Jane\u007fDoe', 'Jane\u0085Doe']) {
      expect(checkFullName(name)).toBe('One line, without tabs or other control characters.');
    }
    expect(checkFullName('Zoë Müller-Okafor')).toBeNull();
    expect(checkFullName('')).toBeNull();
  });

  it('says what was saved', () => {
    expect(savedMessage({ full_name: 'Jane Doe' })).toBe('Full name saved.');
    expect(savedMessage({ full_name: '' })).toBe('Full name removed.');
    expect(savedMessage({ email: 'new@example.org' })).toBe('Email address saved.');
    expect(savedMessage({ email: 'new@example.org', full_name: 'Jane Doe' })).toBe('Profile saved.');
  });

  it("puts the gateway's refusals next to their field", () => {
    expect(fieldErrorsFromFailure(refused('email_taken'))).toEqual({ email: 'Another account uses this email address.' });
    expect(
      fieldErrorsFromFailure(refused('validation_error', [{ loc: ['body', 'full_name'], msg: 'must not contain control characters', type: 'control_characters' }])),
    ).toEqual({ fullName: 'One line, without tabs or other control characters.' });
    expect(
      fieldErrorsFromFailure(refused('validation_error', [{ loc: ['body', 'full_name'], msg: 'String should have at most 200 characters', type: 'string_too_long' }])),
    ).toEqual({ fullName: 'At most 200 characters.' });
    expect(fieldErrorsFromFailure(refused('validation_error', [{ loc: ['body', 'email'], msg: 'x', type: 'value_error' }]))).toEqual({
      email: 'Enter an email address like name@hospital.org.',
    });
  });

  it('leaves other refusals to the general message', () => {
    expect(fieldErrorsFromFailure(refused('rate_limited'))).toBeNull();
    expect(fieldErrorsFromFailure(refused('validation_error'))).toBeNull();
    expect(fieldErrorsFromFailure(refused('validation_error', [{ loc: ['body'], type: 'json_invalid' }]))).toBeNull();
  });
});
