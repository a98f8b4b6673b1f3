import { describe, expect, it } from 'vitest';

import { failedRules, passwordStrength } from '../password-rules';

describe('password rules', () => {
  it('accepts a password meeting every rule', () => {
    expect(failedRules('Correct-Horse-42-Battery', 'jane')).toEqual([]);
  });

  it('names each rule a password breaks', () => {
    expect(failedRules('short', 'jane').map((r) => r.id)).toEqual(['length', 'upper', 'digit', 'special']);
  });

  it('refuses a password containing the username in any case', () => {
    expect(failedRules('JaneDoe-2026-Night!', 'janedoe').map((r) => r.id)).toEqual(['username']);
  });

  it('counts bytes, not characters, for the 72-byte bcrypt limit', () => {
    expect(failedRules(`Aa1!${'é'.repeat(40)}`, '').map((r) => r.id)).toEqual(['bytes']);
  });

  it('rates long mixed passwords above short or common ones', () => {
    expect(passwordStrength('')).toBe(0);
    expect(passwordStrength('Password123!')).toBeLessThan(passwordStrength('vX7#qL9!mZ2@rT'));
    expect(passwordStrength('aaaaaaaaaaaa')).toBe(0);
    expect(passwordStrength('Tr0ub4dor&3-horse-staple-Battery')).toBe(4);
  });
});
