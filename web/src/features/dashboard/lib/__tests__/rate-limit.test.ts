import { afterEach, describe, expect, it, vi } from 'vitest';

import { retryAfterSeconds } from '@/lib/problem';

import { AnswerCache } from '../answer-cache';
import { startCountdown, waitNote } from '../countdown';
import { PERIODS } from '../period';

describe('answers kept on the device', () => {
  let now = 0;
  const cache = (): AnswerCache => new AnswerCache(2 * 60_000, 15 * 60_000, () => now);

  it('lets a user flick through every period, and back, within the limit of 10 reads a minute', async () => {
    now = 0;
    const answers = cache();
    const asked: string[] = [];
    const ask = (key: string) => () => {
      asked.push(key);
      return Promise.resolve({ key });
    };
    for (let round = 0; round < 3; round += 1) {
      for (const period of PERIODS) {
        await answers.load(`summary ${period.value}`, ask(`summary ${period.value}`));
        await answers.load(`trends ${period.value}`, ask(`trends ${period.value}`));
        now += 5_000;
      }
    }
    // Six periods once each (12 reads over 90 s): never again while the answers are fresh.
    expect(asked).toHaveLength(12);
  });

  it('asks once for a question however many wait for its answer', async () => {
    now = 0;
    const answers = cache();
    const ask = vi.fn(() => Promise.resolve(1));
    await Promise.all([answers.load('q', ask), answers.load('q', ask)]);
    expect(ask).toHaveBeenCalledTimes(1);
  });

  it('shows an older answer at once and asks again in the background, until it is too old to show', async () => {
    now = 0;
    const answers = cache();
    await answers.load('q', () => Promise.resolve('first'));
    now = 3 * 60_000;
    expect(answers.peek('q')).toEqual({ value: 'first', fresh: false });
    await expect(answers.load('q', () => Promise.resolve('second'))).resolves.toBe('second');
    expect(answers.peek('q')).toEqual({ value: 'second', fresh: true });
    now += 15 * 60_000;
    expect(answers.peek('q')).toBeUndefined();
  });

  it('keeps no failure: the next try asks the gateway', async () => {
    now = 0;
    const answers = cache();
    await expect(answers.load('q', () => Promise.reject(new Error('429')))).rejects.toThrow('429');
    await expect(answers.load('q', () => Promise.resolve('ok'))).resolves.toBe('ok');
  });
});

describe('told to wait (429 with Retry-After)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads the wait from the header, or from the problem', () => {
    expect(retryAfterSeconds('50', null)).toBe(50);
    expect(retryAfterSeconds(undefined, { code: 'rate_limited', retry_after: 12 })).toBe(12);
    expect(retryAfterSeconds('Thu, 01 Jan 2026 00:00:30 GMT', null, Date.parse('2026-01-01T00:00:00Z'))).toBe(30);
    expect(retryAfterSeconds(undefined, null)).toBeNull();
  });

  it('counts down live, once a second, and asks again by itself when the wait is over', () => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
    const seen: number[] = [];
    const done = vi.fn();
    startCountdown(3_000, (left) => seen.push(left), done);
    expect(seen).toEqual([3]);
    vi.advanceTimersByTime(1_000);
    expect(seen).toEqual([3, 2]);
    vi.advanceTimersByTime(1_000);
    expect(done).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1_000);
    expect(seen).toEqual([3, 2, 1, 0]);
    expect(done).toHaveBeenCalledTimes(1);
  });

  it('stops counting when the dashboard closes', () => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
    const done = vi.fn();
    const stop = startCountdown(2_000, () => undefined, done);
    stop();
    vi.advanceTimersByTime(5_000);
    expect(done).not.toHaveBeenCalled();
  });

  it('says so in plain words, and whose figures stay on screen meanwhile', () => {
    expect(waitNote(42, null)).toBe('Too many dashboard requests — the figures will refresh in 42 s.');
    expect(waitNote(5, 'the last week')).toBe(
      'Too many dashboard requests — the figures will refresh in 5 s. Until then these are the figures for the last week.',
    );
  });
});
