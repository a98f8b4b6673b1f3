import { describe, expect, it } from 'vitest';

import { dayRange, formatAge } from '../time';

const NOW = Date.parse('2026-11-29T12:00:00Z');

describe('formatAge', () => {
  it.each([
    ['2026-11-29T11:59:20Z', '40 s'],
    ['2026-11-29T11:48:00Z', '12 min'],
    ['2026-11-29T09:00:00Z', '3 h'],
    ['2026-11-29T08:55:00Z', '3 h 5 min'],
    ['2026-11-27T08:00:00Z', '2 d 4 h'],
    ['2026-11-22T12:00:00Z', '7 d'],
  ])('%s is %s ago', (iso, expected) => {
    expect(formatAge(iso, NOW)).toBe(expected);
  });

  it('shows a clock running ahead as 0 s and garbage as a dash', () => {
    expect(formatAge('2026-11-29T12:00:30Z', NOW)).toBe('0 s');
    expect(formatAge('yesterday', NOW)).toBe('—');
  });
});

describe('dayRange', () => {
  it('turns inclusive calendar days into a half-open range in local time', () => {
    const result = dayRange('2026-11-01', '2026-11-03');
    expect(result).toEqual({
      range: { since: new Date(2026, 10, 1).toISOString(), until: new Date(2026, 10, 4).toISOString() },
    });
  });

  it('takes one end only, or none', () => {
    expect(dayRange('2026-11-01', '')).toEqual({ range: { since: new Date(2026, 10, 1).toISOString() } });
    expect(dayRange('', '2026-12-31')).toEqual({ range: { until: new Date(2027, 0, 1).toISOString() } });
    expect(dayRange('', '')).toEqual({ range: {} });
  });

  it('accepts a single day', () => {
    expect(dayRange('2026-02-28', '2026-02-28')).toEqual({
      range: { since: new Date(2026, 1, 28).toISOString(), until: new Date(2026, 2, 1).toISOString() },
    });
  });

  it('refuses a range that ends before it starts, and dates the calendar lacks', () => {
    expect(dayRange('2026-11-03', '2026-11-01')).toHaveProperty('error');
    expect(dayRange('2026-02-30', '')).toHaveProperty('error');
    expect(dayRange('', '29/11/2026')).toHaveProperty('error');
  });
});
