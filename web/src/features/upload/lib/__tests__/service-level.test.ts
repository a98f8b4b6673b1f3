import { describe, expect, it } from 'vitest';

import { serviceLevelOf } from '../service-level';

describe('the service level a study is sent with', () => {
  it("is the user's default until they choose, routine until the default is known", () => {
    expect(serviceLevelOf(null, undefined)).toBe('routine');
    expect(serviceLevelOf(null, 'emergency')).toBe('emergency');
  });

  it('is the level the user chose, whatever default arrives before or after the choice', () => {
    expect(serviceLevelOf('stat', undefined)).toBe('stat');
    expect(serviceLevelOf('stat', 'emergency')).toBe('stat');
    expect(serviceLevelOf('stat', 'routine')).toBe('stat');
    // Choosing the level that happens to be the default is a choice too: a later default keeps it.
    expect(serviceLevelOf('routine', 'stat')).toBe('routine');
  });
});
