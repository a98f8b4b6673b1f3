import { describe, expect, it } from 'vitest';

import type { TrendDay } from '../../api/analytics';
import { formatCount, formatGigabytes, formatPercent, formatSeconds } from '../figures';
import { DEFAULT_FILTERS, fromSearch, PERIODS, toQuery } from '../period';
import { fillDays, modalitiesOf, modalitySeries } from '../series';

function day(date: string, modalities: Record<string, number> = {}): TrendDay {
  const uploads = Object.values(modalities).reduce((a, b) => a + b, 0);
  return { date, uploads, bytes: uploads * 1000, delivered: uploads, failed: 0, modalities };
}

describe('period → query', () => {
  it('offers the six periods the gateway knows, in order', () => {
    expect(PERIODS.map((p) => p.value)).toEqual(['1w', '2w', '1m', '3m', '6m', 'all']);
    expect(PERIODS.map((p) => p.label)).toEqual(['1W', '2W', '1M', '3M', '6M', 'ALL']);
  });

  it('sends only the period for a non-admin, whatever filters are set', () => {
    const filters = { period: '3m' as const, userId: 'u-1', modality: 'ct', serviceLevel: 'stat' as const };
    expect(toQuery(filters, false)).toEqual({ period: '3m' });
  });

  it('sends an admin only the filters that are set, modality upper-cased', () => {
    expect(toQuery(DEFAULT_FILTERS, true)).toEqual({ period: '1m' });
    expect(toQuery({ period: 'all', userId: 'u-1', modality: ' ct ', serviceLevel: 'routine' }, true)).toEqual({
      period: 'all',
      user_id: 'u-1',
      modality: 'CT',
      service_level: 'routine',
    });
  });

  it('drops a modality the gateway would refuse rather than failing the whole view', () => {
    expect(toQuery({ ...DEFAULT_FILTERS, modality: 'C T;' }, true)).toEqual({ period: '1m' });
  });

  it('reads filters back from the address, falling back to the defaults', () => {
    expect(fromSearch(new URLSearchParams('period=6m&modality=MR&service_level=stat'))).toEqual({
      period: '6m',
      userId: '',
      modality: 'MR',
      serviceLevel: 'stat',
    });
    expect(fromSearch(new URLSearchParams('period=5y&service_level=soon'))).toEqual(DEFAULT_FILTERS);
  });
});

describe('number formatting', () => {
  it('formats volumes in GB with two decimals, never hiding a small volume as zero', () => {
    expect(formatGigabytes(0)).toBe('0 GB');
    expect(formatGigabytes(1_500_000)).toBe('< 0.01 GB');
    expect(formatGigabytes(2_345_678_901)).toBe('2.35 GB');
    expect(formatGigabytes(1_234_000_000_000)).toBe('1,234.00 GB');
  });

  it('formats a success rate as a percentage, a dash when nothing finished', () => {
    expect(formatPercent(null)).toBe('—');
    expect(formatPercent(1)).toBe('100 %');
    expect(formatPercent(2 / 3)).toBe('66.7 %');
    expect(formatPercent(0)).toBe('0 %');
  });

  it('formats durations from seconds to days', () => {
    expect(formatSeconds(null)).toBe('—');
    expect(formatSeconds(4.4)).toBe('4 s');
    expect(formatSeconds(185)).toBe('3 min 5 s');
    expect(formatSeconds(120)).toBe('2 min');
    expect(formatSeconds(7800)).toBe('2 h 10 min');
    expect(formatSeconds(100_800)).toBe('1 d 4 h');
  });

  it('groups thousands in counts', () => {
    expect(formatCount(12345)).toBe('12,345');
  });
});

describe('zero-filled series', () => {
  it('fills missing days with zeros and keeps days in order', () => {
    const filled = fillDays([day('2026-03-03', { CT: 1 }), day('2026-02-28', { MR: 2 })]);
    expect(filled.map((d) => d.date)).toEqual(['2026-02-28', '2026-03-01', '2026-03-02', '2026-03-03']);
    expect(filled[1]).toEqual({ date: '2026-03-01', uploads: 0, bytes: 0, delivered: 0, failed: 0, modalities: {} });
    expect(fillDays([])).toEqual([]);
  });

  it('puts every modality of the period in every row, zero where a day had none', () => {
    const { modalities, rows } = modalitySeries([day('2026-01-01', { CT: 1 }), day('2026-01-03', { MR: 3, CT: 1 })]);
    expect(modalities).toEqual(['MR', 'CT']);
    expect(rows).toEqual([
      { date: '2026-01-01', MR: 0, CT: 1 },
      { date: '2026-01-02', MR: 0, CT: 0 },
      { date: '2026-01-03', MR: 3, CT: 1 },
    ]);
  });

  it('orders modalities by uploads, then by name', () => {
    expect(modalitiesOf([day('2026-01-01', { US: 2, CT: 2, MR: 5 })])).toEqual(['MR', 'CT', 'US']);
  });
});
