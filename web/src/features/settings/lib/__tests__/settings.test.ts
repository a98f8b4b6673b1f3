import { describe, expect, it } from 'vitest';

import { checkEmail, exportFilename } from '../export';

describe('personal data export file name', () => {
  it('names the file after the user and the UTC day', () => {
    expect(exportFilename('jane.doe', new Date('2026-03-04T23:30:00Z'))).toBe('relaypacs_my_data_jane.doe_2026-03-04.json');
  });

  it('never lets a name steer the path', () => {
    expect(exportFilename('../evil/name', new Date('2026-01-01T00:00:00Z'))).toBe('relaypacs_my_data___evil_name_2026-01-01.json');
    expect(exportFilename('', new Date('2026-01-01T00:00:00Z'))).toBe('relaypacs_my_data_user_2026-01-01.json');
  });
});

describe('email check', () => {
  it('accepts a new address', () => {
    expect(checkEmail(' new@example.org ', 'old@example.org')).toBeNull();
  });

  it('explains what is wrong', () => {
    expect(checkEmail('', 'a@b.org')).toBe('Enter an email address.');
    expect(checkEmail('not-an-email', 'a@b.org')).toMatch(/like name@hospital.org/);
    expect(checkEmail('A@B.org', 'a@b.org')).toBe('This is already your email address.');
  });
});
