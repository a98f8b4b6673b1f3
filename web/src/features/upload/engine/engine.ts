/**
 * The headless upload engine (uppy-style core): it owns the queue, runs one study at a time with
 * a few chunks in flight, retries with backoff, waits out offline spells and resumes from the
 * gateway's list of missing chunks. It knows nothing of React, workers or the DOM: the network,
 * the storage, the hasher and the clock are handed to it, so tests drive it directly.
 */
import { userOfToken } from '@/lib/session-user';

import { backoffDelay, classifyFailure, DEFAULT_BACKOFF, retryAfterMs, type BackoffOptions } from './backoff';
import type { ChunkTask } from './chunking';
import type { JobStore } from './db';
import { ENDED_UPLOAD_TOKEN, refusedFields, type CreateUploadBody } from './protocol';
import { planFresh, planResume, queueOrder, type ResumePlan } from './resume';
import { AbortedError, TransportError, type Transport } from './transport';
import type { EngineCommand, EngineEvent, JobProgress, JobState, JobView, UploadJob } from './types';

export interface EngineDeps {
  transport: Transport;
  store: JobStore;
  md5: (data: ArrayBuffer) => Promise<string>;
  emit: (event: EngineEvent) => void;
  parallel?: number;
  backoff?: BackoffOptions;
  random?: () => number;
  now?: () => number;
  emitIntervalMs?: number;
  /** a chunk the gateway says arrived corrupted is re-read and re-sent this many times */
  maxChecksumRetries?: number;
  /** a new Idempotency-Key (default: a random UUID) */
  newKey?: () => string;
  /**
   * While chunks go out, what the gateway confirmed is saved at most this often (default 1 s):
   * a browser that dies mid-upload comes back showing what it had sent, not 0 %.
   */
  progressSaveMs?: number;
}

const RUNNABLE: ReadonlySet<JobState> = new Set(['waiting', 'uploading', 'completing']);
/**
 * States a cancel is taken in. `completing` too: the screens no longer offer it then, but a
 * cancel sent just before is still settled honestly by the gateway's answer (409 once it
 * accepted completion).
 */
const CANCELLABLE: ReadonlySet<JobState> = new Set(['waiting', 'uploading', 'completing', 'paused', 'failed', 'duplicate']);
const STOPPED_MIDWAY: ReadonlySet<JobState> = new Set(['waiting', 'uploading', 'completing', 'paused', 'failed']);
const RATE_WINDOW_MS = 10_000;
/** New upload tokens one chunk may ask for: a token refused again at once is not a sign-out. */
const MAX_TOKEN_RENEWALS = 3;
/** New sessions one job may open by itself after the gateway's expired: a bound, not a loop. */
export const MAX_SESSION_RESTARTS = 2;

interface Live {
  confirmed: Map<number, number>;
  inflight: Map<string, { fileIndex: number; sent: number }>;
  samples: { at: number; bytes: number }[];
  retrying: boolean;
  waitingFor: JobProgress['waitingFor'];
  /** when `confirmed` was last saved with the job */
  savedAt: number;
}

interface RetryOptions {
  needsToken: boolean;
  /** a 401 here is final (the upload token was refused), not a reason to refresh sign-in */
  authIsFatal?: boolean;
}

export class UploadEngine {
  private readonly jobs = new Map<string, UploadJob>();
  private readonly live = new Map<string, Live>();
  private readonly waiters = new Set<() => void>();
  private online = true;
  private token: string | null = null;
  private started = false;
  /** whose queue this is: a sign-in token of anyone else is never used for it */
  private owner: string | null = null;
  /** another user's token arrived: this engine has let go of its queue and does nothing more */
  private stopped = false;
  private active: { jobId: string; controller: AbortController; done: Promise<void> } | null = null;
  /** the running job's request for a new upload token, which every lane refused with `rejected` awaits */
  private renewal: { jobId: string; rejected: string; done: Promise<void> } | null = null;
  /** cancels sent to the gateway and not yet answered for good, by job id */
  private readonly cancels = new Map<string, AbortController>();
  private emitTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly parallel: number;
  private readonly now: () => number;

  constructor(private readonly deps: EngineDeps) {
    this.parallel = deps.parallel ?? 4;
    this.now = deps.now ?? Date.now;
  }

  /** Resolves when no job is running (tests and shutdown use it). */
  async idle(): Promise<void> {
    while (this.active) await this.active.done;
  }

  async handle(command: EngineCommand): Promise<void> {
    if (this.stopped) return;
    switch (command.type) {
      case 'start':
        return this.start(command.owner ?? null);
      case 'online':
        this.online = command.online;
        this.wake();
        if (this.online) this.pump();
        return;
      case 'token':
        if (this.owner && command.token && userOfToken(command.token) !== this.owner) return this.stop();
        this.token = command.token;
        this.wake();
        this.pump();
        return;
      case 'enqueue':
        return this.enqueue(command.jobId);
      case 'pause':
        return this.pause(command.jobId);
      case 'resume':
      case 'retry':
        return this.resume(command.jobId);
      case 'cancel':
        return this.cancel(command.jobId);
      case 'decide-duplicate':
        return this.decideDuplicate(command.jobId, command.send);
      case 'forget':
        return this.forget(command.jobId);
    }
  }

  private async start(owner: string | null): Promise<void> {
    if (this.started) return;
    this.owner = owner;
    if (owner && this.token && userOfToken(this.token) !== owner) return this.stop();
    const stored = await this.deps.store.listJobs();
    if (this.stopped) return;
    for (const job of stored) this.jobs.set(job.id, job);
    this.started = true;
    this.emitNow();
    // A cancel the gateway had not confirmed when the tab closed is still owed to it.
    for (const job of stored) if (job.state === 'cancelling') void this.settleCancel(job);
    this.pump();
  }

  private async enqueue(jobId: string): Promise<void> {
    // Already known (start() read it from storage): replacing the object would let the queue
    // run a stale copy of a job that is running, and open a second session for it.
    if (this.jobs.has(jobId)) return;
    const job = await this.deps.store.getJob(jobId);
    if (!job || this.jobs.has(jobId)) return;
    this.jobs.set(job.id, job);
    this.emitNow();
    this.pump();
  }

  private async pause(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job || !RUNNABLE.has(job.state)) return;
    await this.stopIfActive(jobId, 'paused');
  }

  private async resume(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job || (job.state !== 'paused' && job.state !== 'failed') || job.detailsRefused) return;
    // The user's own "Try again" starts afresh: expired sessions may again be replaced by themselves.
    if (job.state === 'failed') job.sessionRestarts = undefined;
    job.message = undefined;
    await this.setState(job, job.serverId ? 'uploading' : 'waiting');
    this.pump();
  }

  /**
   * A job with a session on the gateway is `cancelling` until the gateway confirms: until then
   * the study may still reach the PACS (completion accepted by another tab, or an answer lost),
   * so the screens must not say "cancelled", and the local files stay in case it refuses.
   */
  private async cancel(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    if (!job || !CANCELLABLE.has(job.state)) return;
    // Decided only once the run has stopped: a session start in flight may still bring a serverId.
    await this.stopIfActive(jobId, 'cancelling');
    if (this.jobs.get(jobId) !== job) return; // forgotten meanwhile
    await this.settleCancel(job);
  }

  /**
   * Cancels at once a job without a session, else sends the cancel in the background: it may
   * wait for the network for hours, and must not hold up the commands that come after it.
   */
  private async settleCancel(job: UploadJob): Promise<void> {
    // No session: no byte left the device under one (a start whose answer was lost is never
    // completed, and the gateway expires it), so nothing can reach the PACS.
    if (!job.serverId) return this.cancelled(job);
    // A storage failure leaves the job `cancelling`: the next start sends the cancel again.
    void this.confirmCancel(job, job.serverId).catch(() => undefined);
  }

  private async confirmCancel(job: UploadJob, serverId: string): Promise<void> {
    if (this.cancels.has(job.id)) return;
    const controller = new AbortController();
    this.cancels.set(job.id, controller);
    const { signal } = controller;
    try {
      // Waits out offline spells and an expired sign-in, and backs off on 5xx, like any request.
      await this.retrying(job, signal, (token) => this.deps.transport.cancel(serverId, token, signal), { needsToken: true });
    } catch (error) {
      if (error instanceof AbortedError || signal.aborted || this.jobs.get(job.id) !== job) return;
      if (error instanceof TransportError && error.status === 409 && error.code === 'upload_not_cancellable') {
        // Completion was accepted: every chunk is on the gateway, which sends the study on.
        job.message = TOO_LATE_TO_CANCEL;
        await this.submitted(job);
        return;
      }
      // 404 / 410: the gateway holds nothing of it any more, so there is nothing left to stop.
      if (!(error instanceof TransportError && (error.status === 404 || error.status === 410))) {
        await this.fail(job, `The gateway did not take the cancel: ${describe(error)}`);
        return;
      }
    } finally {
      if (this.cancels.get(job.id) === controller) this.cancels.delete(job.id);
    }
    if (signal.aborted || this.jobs.get(job.id) !== job) return;
    await this.cancelled(job);
  }

  private async cancelled(job: UploadJob): Promise<void> {
    job.message = undefined;
    this.live.delete(job.id);
    // Files first: once the screens say "cancelled", nothing of the study is left on the device.
    await this.deps.store.deleteBlobs(job.id);
    await this.setState(job, 'cancelled');
  }

  private async decideDuplicate(jobId: string, send: boolean): Promise<void> {
    const job = this.jobs.get(jobId);
    if (job?.state !== 'duplicate') return;
    if (!send) return this.forget(jobId);
    job.forceUpload = true;
    job.message = undefined;
    await this.setState(job, 'waiting');
    this.pump();
  }

  private async forget(jobId: string): Promise<void> {
    const job = this.jobs.get(jobId);
    this.jobs.delete(jobId);
    if (job) job.state = 'cancelled';
    this.cancels.get(jobId)?.abort();
    await this.stopIfActive(jobId, null);
    this.live.delete(jobId);
    await this.deps.store.deleteJob(jobId);
    this.emitNow();
  }

  /**
   * Stops the job if it is the one running. Its new state is set in memory first, so that the
   * queue does not pick the job up again in the moment between the abort and the save.
   */
  private async stopIfActive(jobId: string, state: JobState | null): Promise<void> {
    const job = this.jobs.get(jobId);
    if (job && state) job.state = state;
    const active = this.active;
    if (active?.jobId === jobId) {
      active.controller.abort();
      await active.done;
    }
    if (job && state) await this.setState(job, state);
    this.pump();
  }

  /**
   * Another user's sign-in token: the device changed hands in another tab while this engine held
   * its owner's queue in memory. The token is not used, the running job is abandoned where it
   * stands (its saved state stays: whether it is deleted is the hand-over's decision) and the
   * engine takes no more commands; the tab stops it and reloads.
   */
  private async stop(): Promise<void> {
    this.stopped = true;
    this.token = null;
    this.active?.controller.abort();
    for (const controller of this.cancels.values()) controller.abort();
    await this.idle();
    this.jobs.clear();
    this.live.clear();
    this.emitNow();
  }

  private pump(): void {
    if (!this.started || this.active || this.stopped) return;
    const next = [...this.jobs.values()].filter((job) => RUNNABLE.has(job.state)).sort(queueOrder)[0];
    if (!next) return;
    const controller = new AbortController();
    const done = this.run(next, controller.signal).finally(() => {
      this.active = null;
      this.pump();
    });
    this.active = { jobId: next.id, controller, done };
  }

  private async run(job: UploadJob, signal: AbortSignal): Promise<void> {
    try {
      for (;;) {
        let expired: string | null;
        try {
          expired = await this.runSession(job, signal);
        } catch (error) {
          if (signal.aborted || !isSessionExpired(error)) throw error;
          expired = describe(error);
        }
        if (expired === null || !(await this.restartSession(job, expired, signal))) return;
      }
    } catch (error) {
      if (error instanceof AbortedError || signal.aborted) return;
      if (error instanceof TransportError && (error.status === 404 || error.status === 410)) {
        this.forgetSession(job);
      }
      await this.fail(job, describe(error));
    }
  }

  /**
   * Runs the job on its session (opening one if it has none). Null once the job is settled (or
   * stopped); the reason when the gateway's session expired before every chunk arrived.
   */
  private async runSession(job: UploadJob, signal: AbortSignal): Promise<string | null> {
    let plan: ResumePlan;
    if (!job.serverId) {
      if (!(await this.create(job, signal))) return null;
      plan = planFresh(job.files, this.chunkSizeOf(job));
    } else {
      plan = await this.plan(job, signal);
    }
    for (;;) {
      if (plan.kind === 'gone') {
        if (plan.expired) return plan.reason;
        this.forgetSession(job);
        await this.fail(job, plan.reason);
        return null;
      }
      if (plan.kind === 'already-submitted') {
        if (signal.aborted) return null;
        await this.submitted(job);
        return null;
      }
      if (plan.kind === 'send') {
        await this.advance(job, 'uploading', signal);
        this.startLive(job, plan.confirmedBytes);
        try {
          await this.sendAll(job, plan.tasks, signal);
        } catch (error) {
          // Completed meanwhile (by another tab, or before a crash): ask where it stands.
          if (!(error instanceof TransportError && error.code === 'upload_not_receiving')) throw error;
          plan = await this.plan(job, signal);
          continue;
        }
      }
      await this.advance(job, 'completing', signal);
      if (await this.complete(job, signal)) {
        if (signal.aborted) return null;
        await this.submitted(job);
        return null;
      }
      plan = await this.plan(job, signal);
    }
  }

  /**
   * The gateway's session expired while the files were still on this device (it was offline for
   * more than a day, say): the same job starts a new session and sends everything again, as the
   * command-line uploader does, with no tap needed. At most MAX_SESSION_RESTARTS times, and only
   * while every file is still stored here; otherwise the job fails with `reason`. True when the
   * job goes on with a new session.
   */
  private async restartSession(job: UploadJob, reason: string, signal: AbortSignal): Promise<boolean> {
    const restarts = job.sessionRestarts ?? 0;
    const canRestart = restarts < MAX_SESSION_RESTARTS && (await this.filesStored(job));
    if (signal.aborted) throw new AbortedError();
    // The old session's ids, token, key and confirmed chunks mean nothing to a new one; the key
    // goes too, so the POST /uploads is a new request and not an answer replayed from the old one.
    this.forgetSession(job);
    this.live.delete(job.id);
    if (!canRestart) {
      await this.fail(job, reason);
      return false;
    }
    job.sessionRestarts = restarts + 1;
    job.message = SESSION_RESTARTED;
    await this.advance(job, 'waiting', signal);
    return true;
  }

  /** Whether every file of the job can still be read from this device. */
  private async filesStored(job: UploadJob): Promise<boolean> {
    try {
      for (const file of job.files) await this.deps.store.readChunk(job.id, file.index, 0, 0);
      return true;
    } catch {
      return false;
    }
  }

  private chunkSizeOf(job: UploadJob): number {
    if (!job.chunkSize) throw new Error('the upload has no chunk size yet');
    return job.chunkSize;
  }

  /** Opens the session on the gateway; false when it is a duplicate awaiting the user's word. */
  private async create(job: UploadJob, signal: AbortSignal): Promise<boolean> {
    const study = Object.fromEntries(
      Object.entries(job.study).filter(([, value]) => value !== undefined && value !== ''),
    ) as Record<string, string>;
    const body: CreateUploadBody = {
      study,
      files: job.files.map((file) => ({ name: file.name, size: file.size })),
      ...(job.requestedChunkSize ? { chunk_size: job.requestedChunkSize } : {}),
      force_upload: job.forceUpload,
    };
    if (!job.idempotencyKey) {
      // Kept before it is used: a lost answer, a reload or a crash retries with the same key.
      job.idempotencyKey = (this.deps.newKey ?? (() => crypto.randomUUID()))();
      await this.deps.store.putJob({ ...job, files: job.files.map((file) => ({ ...file })) });
    }
    const key = job.idempotencyKey;
    let created;
    try {
      created = await this.retrying(job, signal, (token) => this.deps.transport.createUpload(body, token, signal, key), {
        needsToken: true,
      });
    } catch (error) {
      if (error instanceof TransportError && error.code === 'idempotency_key_reused') {
        job.idempotencyKey = undefined; // another body under this key: a retry is a new request
      }
      if (error instanceof TransportError && error.status === 422 && error.code === 'validation_error') job.detailsRefused = true;
      if (error instanceof TransportError && error.status === 409 && error.code === 'duplicate_study') {
        job.message = error.message;
        const body = (error.body ?? {}) as { duplicate_of?: unknown };
        if (typeof body.duplicate_of === 'string') job.duplicateOf = body.duplicate_of;
        await this.advance(job, 'duplicate', signal);
        return false;
      }
      throw error;
    }
    const sameOrder =
      created.files.length === job.files.length &&
      created.files.every((file, i) => file.size === job.files[i]?.size);
    const pool = [...created.files];
    for (const file of job.files) {
      const match = sameOrder
        ? created.files[file.index]
        : pool.find((candidate) => candidate.name === file.name && candidate.size === file.size);
      if (!match) throw new Error(`the gateway did not register ${file.name}`);
      pool.splice(pool.indexOf(match), 1);
      file.serverFileId = match.file_id;
      file.chunkCount = match.chunk_count;
    }
    job.serverId = created.upload_id;
    job.uploadToken = created.upload_token;
    job.chunkSize = created.chunk_size;
    job.expiresAt = created.expires_at;
    // Saved even if a pause arrived meanwhile: the gateway's session must not be lost.
    await this.deps.store.putJob({ ...job, files: job.files.map((file) => ({ ...file })) });
    await this.advance(job, 'uploading', signal);
    return true;
  }

  private async plan(job: UploadJob, signal: AbortSignal): Promise<ResumePlan> {
    const serverId = job.serverId;
    if (!serverId) throw new Error('the upload has no session on the gateway');
    try {
      const status = await this.retrying(job, signal, (token) => this.deps.transport.getUpload(serverId, token, signal), {
        needsToken: true,
      });
      return planResume(job.files, this.chunkSizeOf(job), status);
    } catch (error) {
      if (error instanceof TransportError && (error.status === 404 || error.status === 410)) {
        return {
          kind: 'gone',
          reason:
            error.status === 410
              ? 'The upload session expired before every chunk arrived. Start it again.'
              : 'The gateway no longer knows this upload. Start it again.',
          expired: isSessionExpired(error),
        };
      }
      throw error;
    }
  }

  /** true when accepted; false when the gateway still misses chunks (then re-plan). */
  private async complete(job: UploadJob, signal: AbortSignal): Promise<boolean> {
    const serverId = job.serverId;
    if (!serverId) throw new Error('the upload has no session on the gateway');
    try {
      await this.retrying(job, signal, (token) => this.deps.transport.complete(serverId, token, signal), {
        needsToken: true,
      });
      return true;
    } catch (error) {
      if (error instanceof TransportError && error.status === 409 && error.code === 'upload_incomplete') return false;
      throw error;
    }
  }

  private async sendAll(job: UploadJob, tasks: ChunkTask[], signal: AbortSignal): Promise<void> {
    const inner = new AbortController();
    const lanesSignal = AbortSignal.any([signal, inner.signal]);
    let next = 0;
    const outcome: { failure: Error | null } = { failure: null };
    const failed = (): boolean => outcome.failure !== null;
    const lane = async (): Promise<void> => {
      while (!failed() && next < tasks.length && !lanesSignal.aborted) {
        const task = tasks[next];
        next += 1;
        if (!task) return;
        try {
          await this.sendChunk(job, task, lanesSignal);
        } catch (error) {
          if (!failed() && !(error instanceof AbortedError)) {
            outcome.failure = error instanceof Error ? error : new Error(String(error));
            inner.abort();
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, tasks.length) }, lane));
    if (signal.aborted) throw new AbortedError();
    if (outcome.failure) throw outcome.failure;
  }

  private async sendChunk(job: UploadJob, task: ChunkTask, signal: AbortSignal): Promise<void> {
    const file = job.files[task.fileIndex];
    const { serverId } = job;
    if (!file?.serverFileId || !serverId || !job.uploadToken) throw new Error('the upload session is incomplete');
    const fileId = file.serverFileId;
    const key = `${task.fileIndex}:${task.chunkIndex}`;
    for (let renewals = 0; ; renewals += 1) {
      const uploadToken = job.uploadToken;
      if (!uploadToken) throw new Error('the upload session is incomplete');
      try {
        await this.retrying(
          job,
          signal,
          async () => {
            // Read and hash on every try: a checksum refusal may mean the bytes changed under us.
            const body = await this.deps.store.readChunk(job.id, task.fileIndex, task.start, task.end);
            const md5 = await this.deps.md5(body);
            this.setInflight(job, key, task.fileIndex, 0);
            try {
              await this.deps.transport.putChunk({
                uploadId: serverId,
                fileId,
                index: task.chunkIndex,
                body,
                md5,
                uploadToken,
                signal,
                onProgress: (sent) => this.setInflight(job, key, task.fileIndex, sent),
              });
            } finally {
              this.live.get(job.id)?.inflight.delete(key);
            }
          },
          { needsToken: false, authIsFatal: true },
        );
        break;
      } catch (error) {
        const ended = error instanceof TransportError && error.status === 401 && ENDED_UPLOAD_TOKEN.has(error.code ?? '');
        if (!ended || renewals >= MAX_TOKEN_RENEWALS) throw error;
        await this.renewUploadToken(job, uploadToken, signal);
      }
    }
    const live = this.live.get(job.id);
    if (live) live.confirmed.set(task.fileIndex, (live.confirmed.get(task.fileIndex) ?? 0) + (task.end - task.start));
    this.scheduleEmit();
    if (live && !signal.aborted && this.now() - live.savedAt >= (this.deps.progressSaveMs ?? 1_000)) {
      // Awaited in the lane, so a pause, cancel or forget (which wait for the run) comes after it.
      live.savedAt = this.now();
      await this.save(job);
    }
  }

  /**
   * The upload token ended (its owner signed out everywhere or changed the password): the upload
   * goes on with a new one, asked for with the sign-in, waiting for one as every other call does
   * while there is none. One request for all the lanes refused with the same token; the new
   * token is saved with the job at once, so a reload goes on with it too.
   */
  private async renewUploadToken(job: UploadJob, rejected: string, signal: AbortSignal): Promise<void> {
    if (job.uploadToken !== rejected) return; // another lane got the new one meanwhile
    const pending = this.renewal;
    if (pending?.jobId === job.id && pending.rejected === rejected) return pending.done;
    const serverId = job.serverId;
    if (!serverId) throw new Error('the upload has no session on the gateway');
    const done: Promise<void> = (async (): Promise<void> => {
      const issued = await this.retrying(job, signal, (token) => this.deps.transport.renewUploadToken(serverId, token, signal), {
        needsToken: true,
      });
      job.uploadToken = issued.upload_token;
      await this.save(job);
    })().finally(() => {
      if (this.renewal?.done === done) this.renewal = null;
    });
    this.renewal = { jobId: job.id, rejected, done };
    return done;
  }

  private async retrying<T>(
    job: UploadJob,
    signal: AbortSignal,
    operation: (token: string) => Promise<T>,
    options: RetryOptions,
  ): Promise<T> {
    let attempt = 0;
    let checksumFailures = 0;
    for (;;) {
      const token = await this.ready(job, signal, options.needsToken);
      try {
        const result = await operation(token);
        this.setRetrying(job, false);
        return result;
      } catch (error) {
        if (error instanceof AbortedError || signal.aborted) throw new AbortedError();
        if (!(error instanceof TransportError)) throw error;
        const kind = classifyFailure(error.status, error.code);
        if (kind === 'auth' && !options.authIsFatal) {
          if (this.token === token) {
            this.token = null;
            this.deps.emit({ type: 'need-token' });
          }
          continue;
        }
        if (kind === 'checksum' && checksumFailures < (this.deps.maxChecksumRetries ?? 3)) {
          checksumFailures += 1;
          continue;
        }
        if (kind !== 'retry') throw error;
        this.setRetrying(job, true);
        const wait = retryAfterMs(error.retryAfter, this.now()) ?? backoffDelay(attempt, this.deps.backoff ?? DEFAULT_BACKOFF, this.deps.random);
        attempt += 1;
        await this.pauseFor(wait, signal);
      }
    }
  }

  /** Waits until the network is up (and, if needed, a sign-in token is at hand). */
  private async ready(job: UploadJob, signal: AbortSignal, needsToken: boolean): Promise<string> {
    for (;;) {
      if (signal.aborted) throw new AbortedError();
      if (!this.online) this.setWaiting(job, 'network');
      else if (needsToken && !this.token) this.setWaiting(job, 'sign-in');
      else break;
      await this.change(signal);
    }
    // A lane that needs no sign-in (a chunk sent with the upload token) must not clear another
    // lane's wait for one: the job still cannot go on until the renewal has a sign-in.
    if (!(this.liveOf(job).waitingFor === 'sign-in' && !this.token)) this.setWaiting(job, null);
    return this.token ?? '';
  }

  /** Sleeps, but wakes early when the network or the token changes (back online → go now). */
  private pauseFor(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(new AbortedError());
        return;
      }
      const finish = (error?: Error): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(waker);
        if (error) reject(error);
        else resolve();
      };
      const waker = (): void => finish();
      const onAbort = (): void => finish(new AbortedError());
      const timer = setTimeout(waker, ms);
      signal.addEventListener('abort', onAbort);
      this.waiters.add(waker);
    });
  }

  private change(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waker = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        this.waiters.delete(waker);
        reject(new AbortedError());
      };
      if (signal.aborted) {
        reject(new AbortedError());
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waker);
    });
  }

  private wake(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const waker of waiting) waker();
  }

  private async setState(job: UploadJob, state: JobState): Promise<void> {
    job.state = state;
    await this.save(job);
    this.emitNow();
  }

  /** Saves the job with what the gateway has confirmed so far. */
  private async save(job: UploadJob): Promise<void> {
    const live = this.live.get(job.id);
    if (live) for (const file of job.files) file.confirmedBytes = live.confirmed.get(file.index) ?? file.confirmedBytes;
    await this.deps.store.putJob({ ...job, files: job.files.map((file) => ({ ...file })) });
  }

  /** A state change made by the running job: refused once the user paused or cancelled it. */
  private async advance(job: UploadJob, state: JobState, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw new AbortedError();
    await this.setState(job, state);
  }

  private async submitted(job: UploadJob): Promise<void> {
    job.submittedAt = this.now();
    // Done: the note that a new session was started has served its purpose.
    if (job.message === SESSION_RESTARTED) job.message = undefined;
    await this.setState(job, 'submitted');
    // Every chunk is durable on the gateway (its promise 1): the local copy has done its job.
    await this.deps.store.deleteBlobs(job.id);
    this.live.delete(job.id);
    if (job.serverId) this.deps.emit({ type: 'submitted', jobId: job.id, serverId: job.serverId });
    this.emitNow();
  }

  private async fail(job: UploadJob, message: string): Promise<void> {
    job.message = message;
    this.live.delete(job.id);
    await this.setState(job, 'failed');
  }

  private forgetSession(job: UploadJob): void {
    job.serverId = undefined;
    job.uploadToken = undefined;
    job.idempotencyKey = undefined;
    job.chunkSize = undefined;
    job.expiresAt = undefined;
    for (const file of job.files) {
      file.serverFileId = undefined;
      file.chunkCount = undefined;
      // Those bytes went to the forgotten session: a new one starts from nothing.
      file.confirmedBytes = undefined;
    }
  }

  private startLive(job: UploadJob, confirmed: Map<number, number>): void {
    // The first chunk confirmed is saved at once, then at most every progressSaveMs.
    this.live.set(job.id, { confirmed: new Map(confirmed), inflight: new Map(), samples: [], retrying: false, waitingFor: null, savedAt: -Infinity });
    this.emitNow();
  }

  private liveOf(job: UploadJob): Live {
    let live = this.live.get(job.id);
    if (!live) {
      // Until the gateway says what it holds (after a reload or a restart, or while it cannot be
      // reached), the job shows what was last saved as confirmed, not 0.
      const saved = new Map(job.files.map((file) => [file.index, file.confirmedBytes ?? 0]));
      live = { confirmed: saved, inflight: new Map(), samples: [], retrying: false, waitingFor: null, savedAt: this.now() };
      this.live.set(job.id, live);
    }
    return live;
  }

  private setInflight(job: UploadJob, key: string, fileIndex: number, sent: number): void {
    this.liveOf(job).inflight.set(key, { fileIndex, sent });
    this.scheduleEmit();
  }

  private setRetrying(job: UploadJob, retrying: boolean): void {
    const live = this.liveOf(job);
    if (live.retrying === retrying) return;
    live.retrying = retrying;
    this.scheduleEmit();
  }

  private setWaiting(job: UploadJob, waitingFor: JobProgress['waitingFor']): void {
    const live = this.liveOf(job);
    if (live.waitingFor === waitingFor) return;
    live.waitingFor = waitingFor;
    this.emitNow();
  }

  progressOf(job: UploadJob): JobProgress | null {
    const live = this.live.get(job.id);
    if (!live) return this.savedProgressOf(job);
    const files = job.files.map((file) => ({ index: file.index, sentBytes: live.confirmed.get(file.index) ?? 0, size: file.size }));
    for (const { fileIndex, sent } of live.inflight.values()) {
      const file = files[fileIndex];
      if (file) file.sentBytes += sent;
    }
    for (const file of files) file.sentBytes = Math.min(file.sentBytes, file.size);
    const sentBytes = files.reduce((sum, file) => sum + file.sentBytes, 0);
    const at = this.now();
    live.samples.push({ at, bytes: sentBytes });
    while (live.samples.length > 2 && (live.samples[0]?.at ?? at) < at - RATE_WINDOW_MS) live.samples.shift();
    const first = live.samples[0];
    const elapsed = first ? (at - first.at) / 1000 : 0;
    const rate = first && elapsed >= 1 ? Math.max(0, (sentBytes - first.bytes) / elapsed) : 0;
    const remaining = job.totalBytes - sentBytes;
    return {
      sentBytes,
      totalBytes: job.totalBytes,
      rate,
      etaSeconds: rate > 0 ? remaining / rate : null,
      files,
      retrying: live.retrying,
      waitingFor: live.waitingFor,
    };
  }

  /** A job not running since the page (re)loaded, e.g. paused: what it had sent when saved. */
  private savedProgressOf(job: UploadJob): JobProgress | null {
    if (!STOPPED_MIDWAY.has(job.state) || !job.files.some((file) => file.confirmedBytes)) return null;
    const files = job.files.map((file) => ({ index: file.index, sentBytes: Math.min(file.confirmedBytes ?? 0, file.size), size: file.size }));
    const sentBytes = files.reduce((sum, file) => sum + file.sentBytes, 0);
    return { sentBytes, totalBytes: job.totalBytes, rate: 0, etaSeconds: null, files, retrying: false, waitingFor: null };
  }

  snapshot(): JobView[] {
    return [...this.jobs.values()]
      .sort((a, b) => b.createdAt - a.createdAt)
      .map((job) => {
        const { uploadToken: _secret, idempotencyKey: _key, ...visible } = job;
        return { ...visible, files: job.files.map((file) => ({ ...file })), progress: this.progressOf(job) };
      });
  }

  private scheduleEmit(): void {
    if (this.emitTimer !== undefined) return;
    this.emitTimer = setTimeout(() => this.emitNow(), this.deps.emitIntervalMs ?? 250);
  }

  private emitNow(): void {
    clearTimeout(this.emitTimer);
    this.emitTimer = undefined;
    this.deps.emit({ type: 'snapshot', jobs: this.snapshot(), standby: false });
  }
}

/** Said of a job whose cancel the gateway refused because it had accepted completion. */
export const TOO_LATE_TO_CANCEL =
  'It is too late to cancel: the study is already with the gateway, which sends it on to the PACS.';

/** Shown while the engine sends a job again on a new session, the gateway's having expired. */
export const SESSION_RESTARTED = "The gateway's session for this upload had expired; sending it again from the start.";

/** The gateway's answer for a session past its time (not cancelled, not unknown). */
function isSessionExpired(error: unknown): boolean {
  return error instanceof TransportError && error.status === 410 && error.code === 'upload_expired';
}

export function describe(error: unknown): string {
  if (error instanceof TransportError) {
    if (error.status === 413) return 'The study is larger than the gateway accepts.';
    if (error.status === 410) return 'The upload session expired. Start it again.';
    if (error.status === 401) return 'The gateway refused this upload. Start it again.';
    if (error.status === 422 && error.code === 'validation_error') {
      return `The gateway refused the study details — ${refusedFields(error.body)}. Discard this upload and send the study again with the details corrected.`;
    }
    if (error.status === 400 && error.code === 'checksum_mismatch') {
      return 'A part of a file kept arriving damaged. Check the file and start again.';
    }
    return error.message;
  }
  return error instanceof Error ? error.message : 'The upload failed.';
}
