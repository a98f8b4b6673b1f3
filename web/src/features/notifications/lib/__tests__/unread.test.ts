import { beforeEach, describe, expect, it, vi } from 'vitest';

const answers: ((count: number) => void)[] = [];
vi.mock('../../api/notifications', () => ({
  fetchUnreadCount: () => new Promise<number>((resolve) => answers.push(resolve)),
}));

const { unread } = await import('../unread');

describe('the unread count', () => {
  beforeEach(() => {
    answers.length = 0;
    unread.set(null);
  });

  it('takes the REST answer when nothing newer came meanwhile', async () => {
    const pending = unread.refresh();
    answers[0]!(4);
    await pending;
    expect(unread.get()).toBe(4);
  });

  it('never lets a slow REST answer overwrite a newer count from the stream', async () => {
    const pending = unread.refresh();
    unread.set(3); // the stream's unread_count after a later change
    answers[0]!(2); // the answer to the request sent before it
    await pending;
    expect(unread.get()).toBe(3);
  });
});
