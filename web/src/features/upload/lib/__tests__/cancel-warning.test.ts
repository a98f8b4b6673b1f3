import { describe, expect, it } from 'vitest';

import { cancellingNotice, cancelWarning, NOTHING_SENT, storedInstanceCount, UNCONFIRMED } from '../cancel-warning';

describe('what the cancel dialog says about the PACS', () => {
  it('promises nothing reached the reading centre when the gateway says none is stored', () => {
    expect(cancelWarning(true, { kind: 'known', stored: 0 })).toBe(
      'The study will not reach the reading centre and its copy on this device is deleted.',
    );
  });

  it('promises it too before the upload started: no byte left the device', () => {
    expect(cancelWarning(false, { kind: 'checking' })).toBe(NOTHING_SENT);
    expect(cancelWarning(false, { kind: 'unknown' })).toBe(NOTHING_SENT);
  });

  it('says how many instances are already in the PACS and stay there', () => {
    expect(cancelWarning(true, { kind: 'known', stored: 3 })).toBe(
      '3 instances of this study are already in the PACS and will stay there. The rest will not be sent, and the copy on this device is deleted.',
    );
    expect(cancelWarning(true, { kind: 'known', stored: 1 })).toBe(
      '1 instance of this study is already in the PACS and will stay there. The rest will not be sent, and the copy on this device is deleted.',
    );
  });

  it('neither promises nor alarms while the answer is awaited or cannot be had', () => {
    for (const check of [{ kind: 'checking' }, { kind: 'unknown' }] as const) {
      const text = cancelWarning(true, check);
      expect(text).toBe(UNCONFIRMED);
      expect(text).not.toMatch(/will not reach|PACS/);
    }
  });
});

describe('the instances counted as in the PACS', () => {
  it('are those the gateway says are stored, not those pending or refused', () => {
    expect(storedInstanceCount([])).toBe(0);
    expect(
      storedInstanceCount([
        { forward_status: 'stored' },
        { forward_status: 'pending' },
        { forward_status: 'refused', forward_reason: 'duplicate' },
        { forward_status: 'stored' },
        {},
      ]),
    ).toBe(2);
  });
});

describe('what a cancel the gateway has not confirmed says', () => {
  const waiting = (waitingFor: 'network' | 'sign-in' | null, retrying = false) => ({ waitingFor, retrying });

  it('does not say cancelled, and says the cancel goes out when the connection is back', () => {
    for (const text of [cancellingNotice(waiting('network'), false), cancellingNotice(null, true), cancellingNotice(waiting(null, true), false)]) {
      expect(text).toMatch(/The cancel will be sent .*when the connection is back/);
      expect(text).toMatch(/not cancelled and the study stays on this device/);
    }
    expect(cancellingNotice(waiting('network'), false)).toMatch(/^You are offline/);
    expect(cancellingNotice(waiting(null, true), false)).toMatch(/^The gateway cannot be reached/);
  });

  it('waits for the gateway to confirm while the cancel is on its way', () => {
    expect(cancellingNotice(waiting(null), false)).toBe('Cancelling — waiting for the gateway to confirm.');
    expect(cancellingNotice(waiting('sign-in'), false)).toMatch(/once your sign-in is renewed/);
  });
});
