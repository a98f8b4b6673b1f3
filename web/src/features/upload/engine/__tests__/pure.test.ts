import { describe, expect, it } from 'vitest';

import { backoffDelay, classifyFailure, retryAfterMs } from '../backoff';
import { allIndexes, chunkCount, chunkRange, tasksFor } from '../chunking';
import { hexToBase64, md5Base64 } from '../md5';
import { parseUploadStatus, type ServerUploadStatus } from '../protocol';
import { planFresh, planResume, queueOrder } from '../resume';
import type { JobFile } from '../types';

describe('chunking', () => {
  it('splits a file into ceil(size / chunk) chunks, the last one short', () => {
    expect(chunkCount(10, 4)).toBe(3);
    expect(chunkRange(10, 4, 0)).toEqual({ start: 0, end: 4 });
    expect(chunkRange(10, 4, 2)).toEqual({ start: 8, end: 10 });
  });

  it('gives an exact multiple no empty trailing chunk', () => {
    expect(chunkCount(8, 4)).toBe(2);
    expect(chunkRange(8, 4, 1)).toEqual({ start: 4, end: 8 });
  });

  it('keeps an empty file as one empty chunk', () => {
    expect(chunkCount(0, 4)).toBe(1);
    expect(chunkRange(0, 4, 0)).toEqual({ start: 0, end: 0 });
  });

  it('refuses chunk indexes outside the file', () => {
    expect(() => chunkRange(10, 4, 3)).toThrow(RangeError);
    expect(() => chunkRange(10, 4, -1)).toThrow(RangeError);
    expect(() => chunkCount(10, 0)).toThrow();
  });

  it('covers every byte exactly once', () => {
    const size = 1_048_577;
    const tasks = tasksFor(0, size, 65_536, allIndexes(size, 65_536));
    expect(tasks.reduce((sum, t) => sum + (t.end - t.start), 0)).toBe(size);
    tasks.forEach((task, i) => {
      expect(task.start).toBe(i * 65_536);
    });
  });
});

describe('md5 for Content-MD5', () => {
  it('matches the RFC 1321 test vectors, base64-encoded', async () => {
    expect(await md5Base64(new Uint8Array())).toBe('1B2M2Y8AsgTpgAmY7PhCfg==');
    expect(await md5Base64(new TextEncoder().encode('abc'))).toBe(hexToBase64('900150983cd24fb0d6963f7d28e17f72'));
  });

  it('hashes an ArrayBuffer and a view of it alike', async () => {
    const bytes = new TextEncoder().encode('The quick brown fox jumps over the lazy dog');
    expect(await md5Base64(bytes.buffer)).toBe(await md5Base64(bytes));
    expect(await md5Base64(bytes)).toBe(hexToBase64('9e107d9d372bb6826bd81d3542a419d6'));
  });
});

describe('backoff', () => {
  it('doubles the window per attempt up to the cap', () => {
    const options = { baseMs: 100, capMs: 1_000 };
    expect(backoffDelay(0, options, () => 1)).toBe(100);
    expect(backoffDelay(3, options, () => 1)).toBe(800);
    expect(backoffDelay(10, options, () => 1)).toBe(1_000);
  });

  it('keeps at least half the window and jitters the rest', () => {
    const options = { baseMs: 100, capMs: 1_000 };
    expect(backoffDelay(2, options, () => 0)).toBe(200);
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(4, options)));
    expect(delays.size).toBeGreaterThan(10);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(500);
      expect(delay).toBeLessThanOrEqual(1_000);
    }
  });

  it('retries what may pass next time and gives up on what will not', () => {
    expect(classifyFailure(null)).toBe('retry');
    expect(classifyFailure(503)).toBe('retry');
    expect(classifyFailure(429)).toBe('retry');
    expect(classifyFailure(401)).toBe('auth');
    expect(classifyFailure(400, 'checksum_mismatch')).toBe('checksum');
    expect(classifyFailure(400, 'validation_error')).toBe('fatal');
    expect(classifyFailure(409, 'chunk_conflict')).toBe('fatal');
    expect(classifyFailure(409, 'idempotency_key_in_flight')).toBe('retry');
    expect(classifyFailure(410)).toBe('fatal');
  });

  it('honours Retry-After in seconds or as a date', () => {
    expect(retryAfterMs('3')).toBe(3_000);
    expect(retryAfterMs('Thu, 01 Jan 1970 00:00:10 GMT', 4_000)).toBe(6_000);
    expect(retryAfterMs(null)).toBeNull();
    expect(retryAfterMs('soon')).toBeNull();
  });
});

const FILES: JobFile[] = [
  { index: 0, name: 'a.dcm', size: 10, serverFileId: 'fa' },
  { index: 1, name: 'b.dcm', size: 4, serverFileId: 'fb' },
];

function status(state: string, missing: Record<string, number[]>): ServerUploadStatus {
  return {
    upload_id: 'u1',
    state,
    files: Object.entries(missing).map(([file_id, missing_chunks]) => ({ file_id, missing_chunks })),
    timeline: [],
    instances: [],
  };
}

describe('resume decisions', () => {
  it('sends every chunk of a fresh session', () => {
    const plan = planFresh(FILES, 4);
    expect(plan.kind === 'send' && plan.tasks.map((t) => `${t.fileIndex}:${t.chunkIndex}`)).toEqual(['0:0', '0:1', '0:2', '1:0']);
  });

  it('sends only what the gateway says is missing, and counts the rest as sent', () => {
    const plan = planResume(FILES, 4, status('receiving', { fa: [2, 0], fb: [] }));
    expect(plan.kind).toBe('send');
    if (plan.kind !== 'send') return;
    expect(plan.tasks.map((t) => `${t.fileIndex}:${t.chunkIndex}`)).toEqual(['0:0', '0:2']);
    expect(plan.confirmedBytes.get(0)).toBe(4);
    expect(plan.confirmedBytes.get(1)).toBe(4);
  });

  it('goes straight to completion when nothing is missing', () => {
    expect(planResume(FILES, 4, status('receiving', { fa: [], fb: [] })).kind).toBe('complete');
  });

  it('never sends again once the gateway has accepted completion', () => {
    expect(planResume(FILES, 4, status('validated', { fa: [0], fb: [0] })).kind).toBe('already-submitted');
  });

  it('gives up on an expired or cancelled session, or one that lost a file', () => {
    expect(planResume(FILES, 4, status('expired', {})).kind).toBe('gone');
    expect(planResume(FILES, 4, status('cancelled', {})).kind).toBe('gone');
    expect(planResume(FILES, 4, status('receiving', { fa: [] })).kind).toBe('gone');
  });

  it('reads missing chunks from received_chunks when that is what the gateway sends', () => {
    const parsed = parseUploadStatus({
      id: 'u1',
      state: 'receiving',
      files: [{ id: 'fa', chunk_count: 3, received_chunks: [1] }],
      timeline: [{ to_state: 'receiving', created_at: '2026-01-01T00:00:00Z' }],
    });
    expect(parsed.upload_id).toBe('u1');
    expect(parsed.files[0]?.missing_chunks).toEqual([0, 2]);
    expect(parsed.timeline[0]?.state).toBe('receiving');
  });

  it('refuses to guess when the gateway does not say what is missing', () => {
    expect(() => parseUploadStatus({ upload_id: 'u1', state: 'receiving', files: [{ file_id: 'fa' }] })).toThrow(/missing/);
  });

  it('queues STAT before emergency before routine, oldest first', () => {
    const jobs = [
      { id: 'r', createdAt: 1, study: { service_level: 'routine' } },
      { id: 's2', createdAt: 3, study: { service_level: 'stat' } },
      { id: 'e', createdAt: 0, study: { service_level: 'emergency' } },
      { id: 's1', createdAt: 2, study: { service_level: 'stat' } },
    ];
    expect(jobs.sort(queueOrder).map((j) => j.id)).toEqual(['s1', 's2', 'e', 'r']);
  });
});

describe('the gateway status', () => {
  it('expands missing chunks sent as inclusive ranges', () => {
    const parsed = parseUploadStatus({
      upload_id: 'u1',
      state: 'receiving',
      failure_reason: null,
      files: [{ file_id: 'fa', chunk_count: 9, missing_chunks: [[0, 2], [5, 5], 7] }],
    });
    expect(parsed.files[0]?.missing_chunks).toEqual([0, 1, 2, 5, 7]);
  });

  it('refuses backwards ranges', () => {
    expect(() => parseUploadStatus({ upload_id: 'u1', state: 'receiving', files: [{ file_id: 'fa', missing_chunks: [[3, 1]] }] })).toThrow();
  });
});
