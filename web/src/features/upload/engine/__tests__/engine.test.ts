import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { env } from '@/config/env';
import { accessTokenOf } from '@/testing/access-token';

import { dexieJobStore, RelayDatabase, type JobStore } from '../db';
import { MAX_SESSION_RESTARTS, SESSION_RESTARTED, TOO_LATE_TO_CANCEL, UploadEngine, type EngineDeps } from '../engine';
import { md5Base64 } from '../md5';
import { TransportError } from '../transport';
import type { EngineEvent, JobView, UploadJob } from '../types';

import { FakeGateway } from './fake-gateway';

let db: RelayDatabase;
let store: JobStore;
let gateway: FakeGateway;
let counter = 0;

beforeEach(() => {
  counter += 1;
  db = new RelayDatabase(`test-${counter}`);
  store = dexieJobStore(db);
  gateway = new FakeGateway();
});

afterEach(async () => {
  db.close();
  await RelayDatabase.delete(`test-${counter}`);
});

function bytes(text: string): Blob {
  return new Blob([new TextEncoder().encode(text)]);
}

function job(id: string, files: Record<string, string>, extra: Partial<UploadJob> = {}): [UploadJob, Blob[]] {
  const blobs = Object.values(files).map(bytes);
  return [
    {
      id,
      createdAt: Date.now(),
      state: 'waiting',
      study: { patient_name: 'DOE^JANE', study_date: '2026-01-02', modality: 'CT', service_level: 'routine' },
      files: Object.keys(files).map((name, index) => ({ index, name, size: blobs[index]?.size ?? 0 })),
      totalBytes: blobs.reduce((n, b) => n + b.size, 0),
      forceUpload: false,
      ...extra,
    },
    blobs,
  ];
}

interface Harness {
  engine: UploadEngine;
  events: EngineEvent[];
  latest: () => JobView[];
}

function harness(options: Partial<EngineDeps> = {}): Harness {
  const events: EngineEvent[] = [];
  const engine = new UploadEngine({
    transport: gateway,
    store,
    md5: md5Base64,
    parallel: 3,
    backoff: { baseMs: 1, capMs: 4 },
    emitIntervalMs: 1,
    emit: (event) => events.push(event),
    ...options,
  });
  const latest = (): JobView[] => {
    for (let i = events.length - 1; i >= 0; i -= 1) {
      const event = events[i];
      if (event?.type === 'snapshot') return event.jobs;
    }
    return [];
  };
  return { engine, events, latest };
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 3_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function stateOf(id: string): Promise<string | undefined> {
  return (await store.getJob(id))?.state;
}

/** Starts job j1 and pauses it once the gateway has stored `count` of its chunks. */
async function startAndPauseAfter(h: Harness, count: number): Promise<void> {
  const original = gateway.putChunk.bind(gateway);
  let stored = 0;
  gateway.putChunk = async (request) => {
    const status = await original(request);
    stored += 1;
    if (stored === count) void h.engine.handle({ type: 'pause', jobId: 'j1' });
    return status;
  };
  try {
    await started(h);
    await until(async () => (await stateOf('j1')) === 'paused', 'paused');
    await h.engine.idle();
  } finally {
    gateway.putChunk = original;
  }
}

async function started(h: Harness): Promise<void> {
  await h.engine.handle({ type: 'token', token: 'access-1' });
  await h.engine.handle({ type: 'start' });
}

describe('upload engine', () => {
  it('sends every chunk with its MD5 and completes the upload', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world', 'b.dcm': 'xyz' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');

    const saved = await store.getJob('j1');
    const serverId = saved?.serverId ?? '';
    expect(new TextDecoder().decode(gateway.assembled(serverId, 0))).toBe('hello chunked world');
    expect(new TextDecoder().decode(gateway.assembled(serverId, 1))).toBe('xyz');
    expect(gateway.puts).toHaveLength(6); // ceil(19/4) + ceil(3/4)
    expect(gateway.completions).toBe(1);
    await until(() => h.events.some((e) => e.type === 'submitted' && e.serverId === serverId), 'event');
  });

  it('opens one session for a job announced after the engine had already read it', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await h.engine.handle({ type: 'enqueue', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    await h.engine.idle();
    expect(gateway.sessions.size).toBe(1);
  });

  it('deletes the local copy of the files once the gateway accepted completion', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(await db.blobs.where('jobId').equals('j1').count()).toBe(0);
    expect(await store.getJob('j1')).toBeDefined();
  });

  it('never puts the upload token in what the screens see', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(JSON.stringify(h.events)).not.toContain('tok-');
  });

  it('retries chunks the gateway could not take, then finishes', async () => {
    gateway.failNextPuts = 5;
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefghijkl' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.puts.length).toBe(3 + 5);
  });

  it('re-reads and re-sends a chunk refused as corrupted', async () => {
    gateway.corruptNextPuts = 1;
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.puts.length).toBe(2);
  });

  it('fails the upload when a chunk keeps arriving corrupted', async () => {
    gateway.corruptNextPuts = 100;
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    expect((await store.getJob('j1'))?.message).toMatch(/damaged/);
  });

  it('waits while offline and goes on by itself when the network returns', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefghijkl' });
    await store.addJob(record, blobs);
    const h = harness();
    await h.engine.handle({ type: 'online', online: false });
    await started(h);
    await until(() => h.latest()[0]?.progress?.waitingFor === 'network', 'waiting for network');
    expect(gateway.sessions.size).toBe(0);

    await h.engine.handle({ type: 'online', online: true });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
  });

  it('keeps trying through a gateway that stops answering mid-upload', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40) });
    await store.addJob(record, blobs);
    const original = gateway.putChunk.bind(gateway);
    let calls = 0;
    gateway.putChunk = async (request) => {
      calls += 1;
      if (calls === 4) gateway.down = true;
      if (calls === 12) gateway.down = false;
      return original(request);
    };
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(new Set(gateway.puts.map((p) => p.index)).size).toBe(10);
  });

  it('resumes after a reload without re-sending chunks the gateway already stored', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(20), 'b.dcm': 'b'.repeat(8) });
    await store.addJob(record, blobs);
    const first = harness();
    await startAndPauseAfter(first, 3);
    // "Reload": the page comes back as a new engine over the same IndexedDB, the job resumed.
    await store.putJob({ ...(await store.getJob('j1'))!, state: 'uploading' });
    const before = new Set(gateway.puts.map((p) => `${p.fileId}:${p.index}`));
    const putsBefore = gateway.puts.length;
    const second = harness();
    await started(second);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    const after = gateway.puts.slice(putsBefore).map((p) => `${p.fileId}:${p.index}`);
    expect(after.filter((key) => before.has(key))).toEqual([]);
    expect(before.size + after.length).toBe(7);
  });

  it('shows a paused job with what it had sent, after a reload too', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(20), 'b.dcm': 'b'.repeat(8) });
    await store.addJob(record, blobs);
    const first = harness({ parallel: 1 });
    await startAndPauseAfter(first, 3);
    const sentBefore = first.latest()[0]?.progress?.sentBytes ?? 0;
    expect(sentBefore).toBeGreaterThanOrEqual(8);
    // "Reload": a new engine over the same IndexedDB, the job still paused.
    const second = harness({ parallel: 1 });
    await started(second);
    const progress = second.latest()[0]?.progress;
    expect(second.latest()[0]?.state).toBe('paused');
    expect(progress?.sentBytes).toBe(sentBefore);
    expect(progress?.rate).toBe(0);
    expect(progress?.etaSeconds).toBeNull();
  });

  it('shows what a job had sent after the browser died mid-upload, before the gateway answers', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(20), 'b.dcm': 'b'.repeat(8) });
    await store.addJob(record, blobs);
    // The browser dies once the gateway has stored 3 chunks: no pause, no state change, the
    // 4th request never answered.
    const original = gateway.putChunk.bind(gateway);
    let calls = 0;
    gateway.putChunk = async (request) => {
      calls += 1;
      if (calls > 3) return new Promise<number>(() => undefined);
      return original(request);
    };
    const first = harness({ parallel: 1, progressSaveMs: 0 });
    await started(first);
    await until(() => calls === 4, 'the 4th chunk on the wire');
    gateway.putChunk = original;

    // The browser starts again with the gateway silent: the job shows its 12 bytes, not 0.
    gateway.down = true;
    const second = harness({ parallel: 1 });
    await started(second);
    await until(() => second.latest()[0]?.progress?.retrying === true, 'retrying');
    expect(second.latest()[0]?.state).toBe('uploading');
    expect(second.latest()[0]?.progress?.sentBytes).toBe(12);

    gateway.down = false;
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    // 7 chunks: the 3 stored before the crash, then only the 4 still missing.
    expect(new Set(gateway.puts.map((p) => `${p.fileId}:${p.index}`)).size).toBe(7);
    expect(gateway.puts).toHaveLength(7);
  });

  it('saves what was sent at most once per progressSaveMs while chunks go out', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40) });
    await store.addJob(record, blobs);
    let clock = 0;
    const original = store.putJob.bind(store);
    const saved: number[] = [];
    store.putJob = async (saving) => {
      saved.push(saving.files[0]?.confirmedBytes ?? 0);
      return original(saving);
    };
    gateway.putChunk = ((put) => async (request: Parameters<FakeGateway['putChunk']>[0]) => {
      clock += 400; // each chunk takes 0.4 s
      return put(request);
    })(gateway.putChunk.bind(gateway));
    const h = harness({ parallel: 1, now: () => clock, progressSaveMs: 1_000 });
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    // 10 chunks of 4 bytes, one every 0.4 s: saved after the 1st, then the first chunks at least
    // 1 s later (the 4th, the 7th, the 10th = all 40 bytes); each change of state is saved too.
    const whileSending = saved.filter((bytes) => bytes > 0 && bytes < 40);
    expect(whileSending).toEqual([4, 16, 28]);
  });

  it('pauses and resumes on request', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    const h = harness();
    await h.engine.handle({ type: 'online', online: false });
    await started(h);
    await h.engine.handle({ type: 'pause', jobId: 'j1' });
    expect(await stateOf('j1')).toBe('paused');
    await h.engine.handle({ type: 'online', online: true });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gateway.sessions.size).toBe(0);
    await h.engine.handle({ type: 'resume', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
  });

  it('cancels: stops sending, tells the gateway and drops the local files', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40) });
    await store.addJob(record, blobs);
    const h = harness();
    const original = gateway.putChunk.bind(gateway);
    gateway.putChunk = async (request) => {
      const status = await original(request);
      if (gateway.puts.length === 2) void h.engine.handle({ type: 'cancel', jobId: 'j1' });
      return status;
    };
    await started(h);
    await until(async () => (await stateOf('j1')) === 'cancelled', 'cancelled');
    await until(() => [...gateway.sessions.values()][0]?.state === 'cancelled', 'gateway told');
    expect(await db.blobs.count()).toBe(0);
    expect(gateway.puts.length).toBeLessThan(10);
  });

  /** Counts the DELETEs that reach the gateway (or fail on the way). */
  function countCancels(): { calls: number } {
    const counter = { calls: 0 };
    const original = gateway.cancel.bind(gateway);
    gateway.cancel = async (...args) => {
      counter.calls += 1;
      return original(...args);
    };
    return counter;
  }

  /** j1 started and paused with a session on the gateway and some chunks stored there. */
  async function pausedWithSession(h: Harness): Promise<string> {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40) });
    await store.addJob(record, blobs);
    await startAndPauseAfter(h, 2);
    return (await store.getJob('j1'))?.serverId ?? '';
  }

  it('is not cancelled, and says it is too late, when the gateway already accepted completion', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    const h = harness();
    const complete = gateway.complete.bind(gateway);
    gateway.complete = async (...args) => {
      await complete(...args);
      // Accepted, but the answer is lost, and the user cancels while the engine asks again.
      void h.engine.handle({ type: 'cancel', jobId: 'j1' });
      throw new TransportError(null, null, 'the connection dropped');
    };
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'followed as submitted');
    const serverId = (await store.getJob('j1'))?.serverId ?? '';
    expect(gateway.sessions.get(serverId)?.state).toBe('assembling');
    await until(() => h.events.some((e) => e.type === 'submitted' && e.serverId === serverId), 'followed by the screens');
    expect(h.latest()[0]?.message).toBe(TOO_LATE_TO_CANCEL);
    expect(h.events.some((e) => e.type === 'snapshot' && e.jobs[0]?.state === 'cancelled')).toBe(false);
  });

  it('keeps the job and its files while offline, says it waits for the network, and cancels once back', async () => {
    const h = harness();
    const serverId = await pausedWithSession(h);
    const cancels = countCancels();
    await h.engine.handle({ type: 'online', online: false });
    await h.engine.handle({ type: 'cancel', jobId: 'j1' });
    await until(() => h.latest()[0]?.progress?.waitingFor === 'network', 'waiting for the network');
    expect(h.latest()[0]?.state).toBe('cancelling');
    expect(await stateOf('j1')).toBe('cancelling');
    expect(await db.blobs.count()).toBe(1);
    expect(cancels.calls).toBe(0);

    await h.engine.handle({ type: 'online', online: true });
    await until(async () => (await stateOf('j1')) === 'cancelled', 'cancelled');
    expect(gateway.sessions.get(serverId)?.state).toBe('cancelled');
    expect(await db.blobs.count()).toBe(0);
  });

  it('retries the cancel with backoff while the gateway does not answer, and only then says cancelled', async () => {
    const h = harness();
    const serverId = await pausedWithSession(h);
    const cancels = countCancels();
    gateway.down = true;
    await h.engine.handle({ type: 'cancel', jobId: 'j1' });
    await until(() => cancels.calls >= 3, 'a few tries');
    await until(() => h.latest()[0]?.progress?.retrying === true, 'shown as retrying');
    expect(h.latest()[0]?.state).toBe('cancelling');
    expect(await db.blobs.count()).toBe(1);

    gateway.down = false;
    await until(async () => (await stateOf('j1')) === 'cancelled', 'cancelled');
    expect(gateway.sessions.get(serverId)?.state).toBe('cancelled');
    expect(await db.blobs.count()).toBe(0);
  });

  it('sends a cancel still owed after a reload', async () => {
    const first = harness();
    const serverId = await pausedWithSession(first);
    await first.engine.handle({ type: 'online', online: false });
    await first.engine.handle({ type: 'cancel', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'cancelling', 'cancelling saved');

    const second = harness();
    await started(second);
    await until(async () => (await stateOf('j1')) === 'cancelled', 'cancelled');
    expect(gateway.sessions.get(serverId)?.state).toBe('cancelled');
    expect(await db.blobs.count()).toBe(0);
  });

  it('takes an expired or unknown session as nothing left to stop', async () => {
    const h = harness();
    const serverId = await pausedWithSession(h);
    gateway.sessions.get(serverId)!.state = 'expired';
    await h.engine.handle({ type: 'cancel', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'cancelled', 'cancelled');
    expect(await db.blobs.count()).toBe(0);
  });

  it('cancels a job that never opened a session at once, without asking the gateway', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const cancels = countCancels();
    const h = harness();
    await h.engine.handle({ type: 'online', online: false });
    await started(h);
    await h.engine.handle({ type: 'cancel', jobId: 'j1' });
    expect(await stateOf('j1')).toBe('cancelled');
    expect(await db.blobs.count()).toBe(0);
    expect(cancels.calls).toBe(0);
  });

  it('names the field the gateway refused, and does not send the same details again', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    record.study.patient_name = 'A'.repeat(201);
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    const failed = h.latest()[0];
    expect(failed?.message).toBe(
      'The gateway refused the study details — Patient name: String should have at most 200 characters. ' +
        'Discard this upload and send the study again with the details corrected.',
    );
    expect(failed?.detailsRefused).toBe(true);

    await h.engine.handle({ type: 'retry', jobId: 'j1' });
    await h.engine.idle();
    expect(await stateOf('j1')).toBe('failed');
    expect(gateway.createKeys).toHaveLength(1);
  });

  it('holds a duplicate study for the user and sends it anyway when asked', async () => {
    gateway.duplicateUnlessForced = true;
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'duplicate', 'duplicate');
    expect(h.latest()[0]?.message).toMatch(/2 days ago/);
    expect(h.latest()[0]?.duplicateOf).toBe('earlier-upload');
    await h.engine.handle({ type: 'decide-duplicate', jobId: 'j1', send: true });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
  });

  it('discards a duplicate study when the user says so', async () => {
    gateway.duplicateUnlessForced = true;
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'duplicate', 'duplicate');
    await h.engine.handle({ type: 'decide-duplicate', jobId: 'j1', send: false });
    expect(await store.getJob('j1')).toBeUndefined();
    expect(await db.blobs.count()).toBe(0);
  });

  it('asks for a fresh sign-in token on 401 and carries on with it', async () => {
    gateway.expiredToken = 'access-1';
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(() => h.events.some((e) => e.type === 'need-token'), 'need-token');
    expect(h.latest()[0]?.progress?.waitingFor).toBe('sign-in');
    await h.engine.handle({ type: 'token', token: 'access-2' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
  });

  it('fails an expired session once it used its new sessions, and forgets it, so a retry opens a new one', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    gateway.sessions.set('old', { id: 'old', ordinal: 0, token: 't', chunkSize: 4, state: 'expired', files: [] });
    await store.putJob({
      ...record,
      state: 'uploading',
      serverId: 'old',
      uploadToken: 't',
      chunkSize: 4,
      files: [{ ...record.files[0]!, serverFileId: 'x' }],
      sessionRestarts: MAX_SESSION_RESTARTS,
    });
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    const failed = await store.getJob('j1');
    expect(failed?.message).toMatch(/expired/);
    expect(failed?.serverId).toBeUndefined();

    await h.engine.handle({ type: 'retry', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect((await store.getJob('j1'))?.serverId).not.toBe('old');
  });

  it("starts a new session by itself when the gateway's expires mid-upload, and sends every chunk again", async () => {
    const text = 'hello chunked world'; // 5 chunks of 4 bytes
    const [record, blobs] = job('j1', { 'a.dcm': text });
    await store.addJob(record, blobs);
    gateway.expireAfterStoredChunks = 2; // the first session runs out of time (24 h) after 2 chunks
    gateway.expiringSessions = 1;
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    await h.engine.idle();

    const saved = await store.getJob('j1');
    expect(saved?.serverId).toBe('u2');
    expect(saved?.sessionRestarts).toBe(1);
    expect(saved?.message).toBeUndefined();
    // A new POST /uploads, not the old one replayed under its key.
    expect(gateway.createKeys).toHaveLength(2);
    expect(new Set(gateway.createKeys).size).toBe(2);
    expect(gateway.createKeys[1]).toMatch(/^[0-9a-f-]{36}$/);
    // Every chunk went to the second session, from chunk 0, and it holds the whole file.
    const second = gateway.puts.filter((put) => put.uploadId === 'u2');
    expect(new Set(second.map((put) => put.index))).toEqual(new Set([0, 1, 2, 3, 4]));
    expect(second.every((put) => put.fileId === 'u2-f0')).toBe(true);
    expect(new TextDecoder().decode(gateway.assembled('u2', 0))).toBe(text);
    expect(gateway.completions).toBe(1);
    // The expired session: nothing more was sent to it once the second one was opened.
    const first = gateway.sessions.get('u1');
    expect(first?.state).toBe('expired');
    expect(first?.files[0]?.chunks.size).toBe(2);
    const lastToFirst = gateway.puts.map((put) => put.uploadId).lastIndexOf('u1');
    expect(lastToFirst).toBeLessThan(gateway.puts.findIndex((put) => put.uploadId === 'u2'));
    // The user was told, while it happened, without having to do anything.
    const told = h.events.some((e) => e.type === 'snapshot' && e.jobs.some((j) => j.id === 'j1' && j.state !== 'failed' && j.message === SESSION_RESTARTED));
    expect(told).toBe(true);
    expect(h.events.some((e) => e.type === 'snapshot' && e.jobs.some((j) => j.state === 'failed'))).toBe(false);
    await until(() => h.events.some((e) => e.type === 'submitted' && e.serverId === 'u2'), 'event');
  });

  it('starts a new session by itself when a reload finds the old one expired (offline for more than a day)', async () => {
    const h = harness();
    const serverId = await pausedWithSession(h);
    gateway.sessions.get(serverId)!.state = 'expired';
    const again = harness();
    await started(again);
    await again.engine.handle({ type: 'resume', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    const saved = await store.getJob('j1');
    expect(saved?.serverId).not.toBe(serverId);
    expect(new TextDecoder().decode(gateway.assembled(saved?.serverId ?? '', 0))).toBe('a'.repeat(40));
  });

  it('stops starting new sessions after MAX_SESSION_RESTARTS when the gateway expires every one', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    gateway.expireAfterStoredChunks = 1;
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    await h.engine.idle();
    expect(MAX_SESSION_RESTARTS).toBe(2);
    expect(gateway.sessions.size).toBe(1 + MAX_SESSION_RESTARTS);
    expect(gateway.createKeys).toHaveLength(1 + MAX_SESSION_RESTARTS);
    const failed = await store.getJob('j1');
    expect(failed?.message).toBe('The upload session expired. Start it again.');
    expect(failed?.serverId).toBeUndefined();
    expect(await db.blobs.count()).toBe(1); // kept for the user's "Try again"
  });

  it('does not start a new session when the local files are gone', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    gateway.expireAfterStoredChunks = 2;
    gateway.expiringSessions = 1; // the first session expires: a second one is started by itself
    const original = gateway.putChunk.bind(gateway);
    gateway.putChunk = async (request) => {
      if (request.uploadId === 'u2') {
        // The second expires too, and meanwhile the study's files left the device.
        gateway.sessions.get('u2')!.state = 'expired';
        await store.deleteBlobs('j1');
      }
      return original(request);
    };
    const h = harness({ parallel: 1 });
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    await h.engine.idle();
    expect(gateway.sessions.size).toBe(2);
    const failed = await store.getJob('j1');
    expect(failed?.message).toBe('The upload session expired. Start it again.');
    expect(failed?.sessionRestarts).toBe(1);
  });

  it.each([
    ['cancelled', 'failed', /cancelled on the gateway/],
    ['rejected', 'submitted', undefined],
    ['unknown', 'failed', /unknown upload/],
  ] as const)('does not start another session when the new one is %s rather than expired', async (what, ends, message) => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    gateway.expireAfterStoredChunks = 2;
    gateway.expiringSessions = 1; // the first session expires: a second one is started by itself
    const original = gateway.putChunk.bind(gateway);
    gateway.putChunk = async (request) => {
      const status = await original(request);
      // …which the gateway then cancels, rejects or no longer knows once it took a chunk.
      if (request.uploadId === 'u2') {
        if (what === 'unknown') gateway.sessions.delete('u2');
        else gateway.sessions.get('u2')!.state = what;
      }
      return status;
    };
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === ends, ends);
    await h.engine.idle();
    expect(gateway.createKeys).toHaveLength(2);
    expect(gateway.sessions.has('u3')).toBe(false);
    const saved = await store.getJob('j1');
    if (message) expect(saved?.message).toMatch(message);
    else expect(saved?.message).toBeUndefined();
  });

  it('finishes a job whose completion was accepted before the tab died', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    await store.putJob({ ...(await store.getJob('j1'))!, state: 'completing' });
    const again = harness();
    await started(again);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted again');
    expect(gateway.completions).toBe(1);
  });

  it('opens one session when the answer to opening it is lost', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    gateway.loseNextCreateAnswers = 2;
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.sessions.size).toBe(1);
    expect(gateway.createKeys).toHaveLength(3);
    expect(new Set(gateway.createKeys).size).toBe(1);
    expect(gateway.createKeys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.stringify(h.latest())).not.toContain(gateway.createKeys[0]);
  });

  it('asks again, with the same key, while the first request with it is still being carried out', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcd' });
    await store.addJob(record, blobs);
    gateway.inFlightNextCreates = 2;
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.createKeys).toHaveLength(3);
    expect(new Set(gateway.createKeys).size).toBe(1);
    expect(gateway.sessions.size).toBe(1);
  });

  it('keeps the key across a reload, so the session opened before it is the one used', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'hello chunked world' });
    await store.addJob(record, blobs);
    gateway.loseNextCreateAnswers = 1_000; // every answer lost while the first tab lives
    const first = harness();
    await started(first);
    await until(() => gateway.createKeys.length >= 2, 'the first start and a retry');
    await first.engine.handle({ type: 'pause', jobId: 'j1' }); // the tab closes
    await first.engine.idle();
    expect(gateway.sessions.size).toBe(1);
    expect((await store.getJob('j1'))?.idempotencyKey).toBe(gateway.createKeys[0]);
    gateway.loseNextCreateAnswers = 0;

    const second = harness();
    await started(second);
    await second.engine.handle({ type: 'resume', jobId: 'j1' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.sessions.size).toBe(1);
    expect(new Set(gateway.createKeys).size).toBe(1);
  });

  it('sends STAT studies before routine ones queued earlier', async () => {
    const [routine, routineBlobs] = job('routine', { 'r.dcm': 'rrrr' });
    const [stat, statBlobs] = job('stat', { 's.dcm': 'ssss' }, { createdAt: routine.createdAt + 1 });
    stat.study.service_level = 'stat';
    await store.addJob(routine, routineBlobs);
    await store.addJob(stat, statBlobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('routine')) === 'submitted', 'both submitted');
    expect(gateway.puts[0]?.uploadId).toBe((await store.getJob('stat'))?.serverId);
  });

  it('reports progress with bytes per file and an overall rate', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(16), 'b.dcm': 'b'.repeat(8) });
    await store.addJob(record, blobs);
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    const progress = h.events
      .flatMap((e) => (e.type === 'snapshot' ? e.jobs : []))
      .map((j) => j.progress)
      .filter((p) => p !== null);
    expect(progress.length).toBeGreaterThan(0);
    const last = progress[progress.length - 1]!;
    expect(last.totalBytes).toBe(24);
    expect(last.sentBytes).toBe(24);
    expect(last.files.map((f) => f.sentBytes)).toEqual([16, 8]);
  });

  it('keeps its limit of chunks in flight at once, and uses all of it', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40), 'b.dcm': 'b'.repeat(20) });
    await store.addJob(record, blobs);
    const original = gateway.putChunk.bind(gateway);
    let inFlight = 0;
    let most = 0;
    gateway.putChunk = async (request) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return await original(request);
      } finally {
        inFlight -= 1;
      }
    };
    const h = harness({ parallel: 3 });
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(most).toBe(3);
    // What the app runs with: 3–4 chunks at once keeps a bad link busy without starving it.
    expect(env.parallelChunks).toBeGreaterThanOrEqual(3);
    expect(env.parallelChunks).toBeLessThanOrEqual(4);
  });

  it('reports the rate over time and the time left at that rate', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(40) });
    await store.addJob(record, blobs);
    let clock = 1_000_000;
    const original = gateway.putChunk.bind(gateway);
    gateway.putChunk = async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 5)); // the screens get a snapshot meanwhile
      clock += 1_000; // every 4-byte chunk takes one second: 4 bytes/s
      return original(request);
    };
    const h = harness({ parallel: 1, now: () => clock });
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    const measured = h.events
      .flatMap((e) => (e.type === 'snapshot' ? e.jobs : []))
      .map((j) => j.progress)
      .filter((p) => p !== null && p.rate > 0 && p.sentBytes >= 12 && p.sentBytes < 40);
    expect(measured.length).toBeGreaterThan(0);
    for (const progress of measured) {
      expect(progress!.rate).toBeGreaterThan(3);
      expect(progress!.rate).toBeLessThan(5);
      expect(progress!.etaSeconds).toBeCloseTo((40 - progress!.sentBytes) / progress!.rate, 6);
    }
  });
});

describe('an upload token that ends with its sign-in', () => {
  /** Records each chunk the gateway accepts, and runs `then` once it has accepted `count`. */
  function afterStored(count: number, then: () => void): number[] {
    const original = gateway.putChunk.bind(gateway);
    const statuses: number[] = [];
    gateway.putChunk = async (request) => {
      const status = await original(request);
      statuses.push(status);
      if (statuses.length === count) then();
      return status;
    };
    return statuses;
  }

  it('waits for a sign-in after the owner signed out everywhere, then goes on with a new upload token', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(20), 'b.dcm': 'b'.repeat(8) });
    await store.addJob(record, blobs);
    const statuses = afterStored(3, () => {
      // Signed out everywhere: the upload token ends, and so does this device's sign-in.
      gateway.revokeUploadTokens();
      gateway.expiredToken = 'access-1';
    });
    const h = harness();
    await started(h);
    await until(() => h.latest()[0]?.progress?.waitingFor === 'sign-in', 'waiting for a sign-in');
    expect(h.events.some((e) => e.type === 'need-token')).toBe(true);
    expect(await stateOf('j1')).toBe('uploading');

    await h.engine.handle({ type: 'token', token: 'access-2' });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');

    // Every chunk was stored once, none sent again once stored (that would answer 200).
    expect(statuses).toEqual(Array(7).fill(201));
    const saved = await store.getJob('j1');
    const serverId = saved?.serverId ?? '';
    expect(new TextDecoder().decode(gateway.assembled(serverId, 0))).toBe('a'.repeat(20));
    expect(new TextDecoder().decode(gateway.assembled(serverId, 1))).toBe('b'.repeat(8));
    // One new token for all the chunks that were refused together, kept for a reload.
    expect(gateway.renewals).toEqual([{ uploadId: serverId, token: saved?.uploadToken }]);
    expect(saved?.uploadToken).not.toBe(`tok-${serverId}`);
    expect(JSON.stringify(h.events)).not.toContain('tok-');
  });

  it('goes on at once when the sign-in is already a new one (a password changed on this device)', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a'.repeat(20) });
    await store.addJob(record, blobs);
    afterStored(2, () => gateway.revokeUploadTokens());
    const h = harness();
    await started(h);
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(h.events.some((e) => e.type === 'need-token')).toBe(false);
    expect(gateway.renewals).toHaveLength(1);
  });

  it('fails the upload rather than loop when every new token is refused at once', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'abcdefgh' });
    await store.addJob(record, blobs);
    // Each token is revoked as soon as it is used, the first one included.
    const put = gateway.putChunk.bind(gateway);
    gateway.putChunk = async (request) => {
      gateway.revokeUploadTokens();
      return put(request);
    };
    const h = harness({ parallel: 1 });
    await started(h);
    await until(async () => (await stateOf('j1')) === 'failed', 'failed');
    expect(gateway.renewals).toHaveLength(3);
    expect((await store.getJob('j1'))?.message).toMatch(/refused/);
  });
});

describe('queue persistence', () => {
  it('keeps jobs and their file bytes across a new database connection (a reload)', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'persist me' });
    await store.addJob(record, blobs);
    db.close();
    const reopened = new RelayDatabase(`test-${counter}`);
    const again = dexieJobStore(reopened);
    expect((await again.listJobs()).map((j) => j.id)).toEqual(['j1']);
    const chunk = await again.readChunk('j1', 0, 0, 7);
    expect(new TextDecoder().decode(chunk)).toBe('persist');
    db = reopened;
  });

  it('deletes a job together with its files', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'x', 'b.dcm': 'y' });
    await store.addJob(record, blobs);
    await store.deleteJob('j1');
    expect(await db.jobs.count()).toBe(0);
    expect(await db.blobs.count()).toBe(0);
  });
});

describe('a device that changes hands while the engine runs', () => {
  /** Alice's engine, her study queued, her session ended elsewhere: the study waits for a token. */
  async function aliceWaitingForSignIn(): Promise<Harness> {
    const [record, blobs] = job('j1', { 'a.dcm': 'a study of alice' });
    await store.addJob(record, blobs);
    const h = harness();
    await h.engine.handle({ type: 'start', owner: 'alice' });
    await until(() => h.latest()[0]?.progress?.waitingFor === 'sign-in', 'waiting for a sign-in');
    return h;
  }

  it("sends nothing of the queue with another user's sign-in token, and lets go of the queue", async () => {
    const h = await aliceWaitingForSignIn();

    await h.engine.handle({ type: 'token', token: accessTokenOf('bob') });
    await h.engine.idle();
    expect(gateway.sessions.size).toBe(0);
    expect(gateway.puts).toEqual([]);
    expect(h.latest()).toEqual([]);
    // Not even her own token starts it again: the tab is reloaded into whoever holds the device.
    await h.engine.handle({ type: 'token', token: accessTokenOf('alice', 2) });
    await h.engine.handle({ type: 'resume', jobId: 'j1' });
    await h.engine.idle();
    expect(gateway.sessions.size).toBe(0);
    // The study itself stays where it is: deleting it is the hand-over's decision, not the engine's.
    expect(await stateOf('j1')).toBe('waiting');
  });

  it('refuses a token of another user that arrived before the queue was loaded', async () => {
    const [record, blobs] = job('j1', { 'a.dcm': 'a study of alice' });
    await store.addJob(record, blobs);
    const h = harness();

    await h.engine.handle({ type: 'token', token: accessTokenOf('bob') });
    await h.engine.handle({ type: 'start', owner: 'alice' });
    await h.engine.idle();
    expect(gateway.sessions.size).toBe(0);
    expect(h.latest()).toEqual([]);
  });

  it("carries on with the owner's own fresh token (a refresh)", async () => {
    const h = await aliceWaitingForSignIn();

    await h.engine.handle({ type: 'token', token: accessTokenOf('alice', 2) });
    await until(async () => (await stateOf('j1')) === 'submitted', 'submitted');
    expect(gateway.sessions.size).toBe(1);
  });
});
