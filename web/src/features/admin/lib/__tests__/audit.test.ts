import { describe, expect, it } from 'vitest';

import { criteriaFor, describeDetails, EMPTY_FORM, formFromParams, formToParams, pickUser } from '../audit';

const ID = '0b9e6a2c-4e4a-4b59-9d61-3f4f0e5a9c11';
const PEOPLE = [
  { id: ID, username: 'Jane.Doe' },
  { id: '11111111-2222-4333-8444-555555555555', username: 'jane' },
];

describe('pickUser', () => {
  it('matches the exact username, whatever the case, never a part of it', () => {
    expect(pickUser('jane.doe', PEOPLE)).toBe(ID);
    expect(pickUser(' JANE ', PEOPLE)).toBe('11111111-2222-4333-8444-555555555555');
    expect(pickUser('jan', PEOPLE)).toBeNull();
  });

  it('takes an account id as it is', () => {
    expect(pickUser(ID.toUpperCase(), [])).toBe(ID);
  });
});

describe('criteriaFor', () => {
  it('sends nothing for an empty form', () => {
    expect(criteriaFor(EMPTY_FORM, null)).toEqual({ criteria: {} });
  });

  it('filters on who acted, or on whom it was done to', () => {
    expect(criteriaFor({ ...EMPTY_FORM, user: 'jane', action: ' role_changed ' }, ID)).toEqual({
      criteria: { actor_id: ID, action: 'role_changed' },
    });
    expect(criteriaFor({ ...EMPTY_FORM, user: 'jane', userIs: 'target' }, ID)).toEqual({
      criteria: { target_type: 'user', target_id: ID },
    });
  });

  it('adds the date range', () => {
    const result = criteriaFor({ ...EMPTY_FORM, from: '2026-11-01', to: '2026-11-01' }, null);
    expect(result).toEqual({
      criteria: { since: new Date(2026, 10, 1).toISOString(), until: new Date(2026, 10, 2).toISOString() },
    });
  });

  it('explains what cannot be asked', () => {
    expect(criteriaFor({ ...EMPTY_FORM, user: 'nobody' }, null)).toEqual({ error: 'No account is named “nobody”.' });
    expect(criteriaFor({ ...EMPTY_FORM, from: '2026-11-02', to: '2026-11-01' }, null)).toHaveProperty('error');
    expect(criteriaFor({ ...EMPTY_FORM, action: 'a\u0000b' }, null)).toHaveProperty('error');
    expect(criteriaFor({ ...EMPTY_FORM, action: 'x'.repeat(65) }, null)).toHaveProperty('error');
  });
});

describe('the form in the URL', () => {
  it('round-trips', () => {
    const form = { user: 'jane', userIs: 'target' as const, action: 'user_disabled', from: '2026-11-01', to: '2026-11-29' };
    const params = new URLSearchParams(formToParams(form, 3));
    expect(params.get('page')).toBe('3');
    expect(formFromParams(params)).toEqual(form);
  });

  it('leaves out empty fields and page 1', () => {
    expect(formToParams({ ...EMPTY_FORM, userIs: 'target' }, 1)).toEqual({});
  });
});

describe('describeDetails', () => {
  it('summarises details as short text', () => {
    expect(describeDetails({ from: 'clinician', to: 'radiologist' })).toBe('from: clinician, to: radiologist');
    expect(describeDetails({ filters: { action: 'x' }, count: 3, empty: null })).toBe('filters: {"action":"x"}, count: 3');
    expect(describeDetails({})).toBe('');
  });
});
