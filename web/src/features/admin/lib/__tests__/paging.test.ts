import { describe, expect, it } from 'vitest';

import { hasNext, hasPrevious, offsetOfPage, pageLabel, previousOffset } from '../paging';

describe('paging', () => {
  it('labels the rows shown', () => {
    expect(pageLabel(0, 25, 60)).toBe('1–25 of 60');
    expect(pageLabel(50, 10, 60)).toBe('51–60 of 60');
    expect(pageLabel(0, 0, 0)).toBe('No results');
  });

  it('knows when there is a page before and after', () => {
    expect(hasPrevious(0)).toBe(false);
    expect(hasPrevious(25)).toBe(true);
    expect(hasNext(0, 25, 60)).toBe(true);
    expect(hasNext(50, 10, 60)).toBe(false);
    expect(previousOffset(10, 25)).toBe(0);
    expect(previousOffset(50, 25)).toBe(25);
  });

  it('reads a page number from the URL, anything odd being page 1', () => {
    expect(offsetOfPage('3', 25)).toBe(50);
    expect(offsetOfPage(null, 25)).toBe(0);
    expect(offsetOfPage('0', 25)).toBe(0);
    expect(offsetOfPage('-2', 25)).toBe(0);
    expect(offsetOfPage('1.5', 25)).toBe(0);
    expect(offsetOfPage('abc', 25)).toBe(0);
  });
});
