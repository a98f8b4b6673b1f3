/** The gateway's password policy, checked live while typing (the gateway checks it again). */

export interface PasswordRule {
  id: string;
  label: string;
  test: (password: string, username: string) => boolean;
}

export const PASSWORD_RULES: PasswordRule[] = [
  { id: 'length', label: 'At least 12 characters', test: (p) => Array.from(p).length >= 12 },
  { id: 'upper', label: 'An upper-case letter', test: (p) => /\p{Lu}/u.test(p) },
  { id: 'lower', label: 'A lower-case letter', test: (p) => /\p{Ll}/u.test(p) },
  { id: 'digit', label: 'A digit', test: (p) => /\p{Nd}/u.test(p) },
  { id: 'special', label: 'A special character (e.g. ! ? # %)', test: (p) => /[^\p{L}\p{Nd}\s]/u.test(p) },
  {
    id: 'username',
    label: 'Does not contain the username',
    test: (p, u) => u.trim() === '' || !p.toLowerCase().includes(u.trim().toLowerCase()),
  },
  { id: 'bytes', label: 'At most 72 bytes', test: (p) => new TextEncoder().encode(p).length <= 72 },
];

export function failedRules(password: string, username: string): PasswordRule[] {
  return PASSWORD_RULES.filter((rule) => !rule.test(password, username));
}

export type Strength = 0 | 1 | 2 | 3 | 4;
export const STRENGTH_LABELS = ['Very weak', 'Weak', 'Fair', 'Strong', 'Very strong'] as const;

const COMMON_FRAGMENTS = ['password', 'passw0rd', 'qwerty', 'letmein', 'welcome', 'admin', 'hospital', '123456', 'abc123', 'iloveyou'];

/**
 * A rough guess at how hard the password is to guess: bits from length and character classes,
 * minus repeats, runs and well-known words. It guides; the rules above decide.
 */
export function passwordStrength(password: string): Strength {
  if (password === '') return 0;
  let pool = 0;
  if (/[a-z]/.test(password)) pool += 26;
  if (/[A-Z]/.test(password)) pool += 26;
  if (/\d/.test(password)) pool += 10;
  if (/[^A-Za-z0-9]/.test(password)) pool += 33;
  const unique = new Set(password).size;
  let bits = Math.log2(Math.max(pool, 2)) * Math.min(password.length, unique * 2);
  const lower = password.toLowerCase();
  if (COMMON_FRAGMENTS.some((word) => lower.includes(word))) bits -= 25;
  if (/(.)\1{2,}/.test(password)) bits -= 10;
  if (/(?:0123|1234|2345|3456|4567|5678|6789|abcd|bcde|cdef)/i.test(password)) bits -= 10;
  if (bits < 28) return 0;
  if (bits < 45) return 1;
  if (bits < 60) return 2;
  if (bits < 80) return 3;
  return 4;
}
