import { describe, expect, it } from 'vitest';

import { canRequeue, isView, listReason, traceReasons, VIEWS } from '../deliveries';

describe('deliveries', () => {
  it('lists failed and waiting uploads by default, and any state on request', () => {
    expect(VIEWS.attention.states).toEqual(['failed', 'validated', 'queued', 'forwarding']);
    expect(VIEWS.all.states).toEqual([]);
    expect(isView('failed')).toBe(true);
    expect(isView('toString')).toBe(false);
    expect(isView(null)).toBe(false);
  });

  it('offers requeue for failed deliveries only', () => {
    expect(canRequeue({ state: 'failed' })).toBe(true);
    for (const state of ['queued', 'forwarding', 'delivered', 'rejected', 'partially_delivered']) {
      expect(canRequeue({ state })).toBe(false);
    }
  });

  it("shows the upload's failure reason while it is failed, else what its state means", () => {
    expect(listReason({ state: 'failed', failure_reason: 'the PACS refused every instance (3)' })).toBe(
      'the PACS refused every instance (3)',
    );
    expect(listReason({ state: 'failed', failure_reason: null })).toBe('No reason recorded.');
    expect(listReason({ state: 'queued', failure_reason: null })).toMatch(/^Waiting/);
    expect(listReason({ state: 'delivered', failure_reason: null })).toBe('—');
  });

  it('calls a reason kept after a requeue an earlier failure', () => {
    const reason = 'not delivered within 24 h: HTTP 401';
    expect(listReason({ state: 'queued', failure_reason: reason })).toMatch(/^Waiting.*Earlier failure: not delivered within 24 h/);
    expect(listReason({ state: 'forwarding', failure_reason: reason })).toMatch(/^Being sent.*Earlier failure/);
    expect(listReason({ state: 'delivered', failure_reason: reason })).toBe(`Delivered after an earlier failure: ${reason}`);
  });

  it("takes the latest timeline note and each distinct PACS answer from an upload's details", () => {
    const reasons = traceReasons({
      state: 'queued',
      failure_reason: null,
      timeline: [
        { state: 'validated', at: '2026-11-29T10:00:00Z', detail: '3 instance(s)' },
        { state: 'queued', at: '2026-11-29T10:00:01Z', detail: null },
        { state: 'queued', at: '2026-11-29T10:00:05Z', detail: 'the PACS is unreachable: HTTP 401; next attempt in 8 s' },
        { state: 'forwarding', at: '2026-11-29T10:00:13Z', detail: null },
      ],
      instances: [
        { forward_status: 'refused', forward_reason: '0xC122 Referenced transfer syntax not supported' },
        { forward_status: 'refused', forward_reason: '0xC122 Referenced transfer syntax not supported' },
        { forward_status: 'pending', forward_reason: '0x0110 Processing failure' },
        { forward_status: 'stored', forward_reason: '0xB000 Coercion of data elements' },
        { forward_status: 'pending', forward_reason: null },
      ],
    });
    expect(reasons).toEqual({
      lastNote: 'the PACS is unreachable: HTTP 401; next attempt in 8 s',
      lastNoteAt: '2026-11-29T10:00:05Z',
      pacsReasons: ['0x0110 Processing failure', '0xC122 Referenced transfer syntax not supported'],
    });
  });
});
