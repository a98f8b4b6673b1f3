import { describe, expect, it } from 'vitest';

import { filenameFromDisposition } from '../download';

describe('filenameFromDisposition', () => {
  it('reads the quoted file name the gateway sends', () => {
    expect(filenameFromDisposition('attachment; filename="relaypacs_audit_20261129T151500Z.csv"', 'x.csv')).toBe(
      'relaypacs_audit_20261129T151500Z.csv',
    );
  });

  it('prefers filename* (RFC 5987) and decodes it', () => {
    expect(filenameFromDisposition(`attachment; filename="a.csv"; filename*=UTF-8''r%C3%A9sum%C3%A9.csv`, 'x.csv')).toBe('résumé.csv');
  });

  it('reads an unquoted name', () => {
    expect(filenameFromDisposition('attachment; filename=audit.csv', 'x.csv')).toBe('audit.csv');
  });

  it('falls back without a header or a name', () => {
    expect(filenameFromDisposition(undefined, 'x.csv')).toBe('x.csv');
    expect(filenameFromDisposition('attachment', 'x.csv')).toBe('x.csv');
  });

  it('never keeps folders or control characters', () => {
    expect(filenameFromDisposition('attachment; filename="../../etc/passwd"', 'x.csv')).toBe('passwd');
    expect(filenameFromDisposition('attachment; filename="..\\\\evil\u0007.csv"', 'x.csv')).toBe('evil.csv');
    expect(filenameFromDisposition('attachment; filename=".."', 'x.csv')).toBe('x.csv');
  });

  it('falls back to the plain name when filename* is malformed', () => {
    expect(filenameFromDisposition(`attachment; filename="ok.csv"; filename*=UTF-8''%E0%A4%A.csv`, 'x.csv')).toBe('ok.csv');
  });
});
