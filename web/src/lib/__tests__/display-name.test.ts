import { describe, expect, it } from 'vitest';

import { displayName } from '../display-name';

describe('the name the app shows for a person', () => {
  it('is the full name when there is one', () => {
    expect(displayName({ username: 'jdoe', full_name: 'Jane Doe' })).toBe('Jane Doe');
  });

  it('is the username without a full name, also for a profile cached before full names', () => {
    expect(displayName({ username: 'jdoe', full_name: null })).toBe('jdoe');
    expect(displayName({ username: 'jdoe', full_name: '  ' })).toBe('jdoe');
    expect(displayName({ username: 'jdoe' })).toBe('jdoe');
  });
});
