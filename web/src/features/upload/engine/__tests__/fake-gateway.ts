/**
 * An in-memory gateway that keeps the upload protocol's rules (MD5 checked, idempotent chunk
 * PUTs, conflicts, completion refused while chunks are missing), with switches for faults.
 */
import { chunkCount } from '../chunking';
import { md5Base64 } from '../md5';
import type { CreateUploadBody, CreatedUpload, IssuedUploadToken, ServerUploadStatus } from '../protocol';
import { AbortedError, TransportError, type PutChunkRequest, type Transport } from '../transport';

interface Session {
  id: string;
  token: string;
  /** the owner signed out everywhere (or changed the password) since the token was given */
  tokenRevoked?: boolean;
  /** 1 for the first session opened, 2 for the next… */
  ordinal: number;
  chunkSize: number;
  state: string;
  files: { file_id: string; name: string; size: number; chunks: Map<number, Uint8Array> }[];
}

export class FakeGateway implements Transport {
  readonly sessions = new Map<string, Session>();
  readonly puts: { uploadId: string; fileId: string; index: number }[] = [];
  /** when true every request fails without an answer, as if the network were gone */
  down = false;
  /** the next N chunk PUTs answer 503 */
  failNextPuts = 0;
  /** the next N chunk PUTs are refused as corrupted */
  corruptNextPuts = 0;
  /** answer 401 to JSON calls made with this token */
  expiredToken: string | null = null;
  duplicateUnlessForced = false;
  /** the next N session starts are carried out, then their answer is lost on the way */
  loseNextCreateAnswers = 0;
  /** the next N session starts find their key still claimed by an earlier request (409) */
  inFlightNextCreates = 0;
  /** the Idempotency-Key of every session start, in order (undefined: none sent) */
  readonly createKeys: (string | undefined)[] = [];
  private readonly byKey = new Map<string, { body: string; created: CreatedUpload }>();
  chunkSize = 4;
  private nextId = 1;
  completions = 0;
  /** a session expires (as after 24 h) once it has stored this many chunks; null: never */
  expireAfterStoredChunks: number | null = null;
  /** how many sessions, the first opened first, `expireAfterStoredChunks` applies to */
  expiringSessions = Infinity;
  /** new upload tokens given out (POST /uploads/{id}/token), in order */
  readonly renewals: { uploadId: string; token: string }[] = [];

  private check(signal: AbortSignal): void {
    if (signal.aborted) throw new AbortedError();
    if (this.down) throw new TransportError(null, null, 'network error');
  }

  private auth(token: string): void {
    if (token === this.expiredToken) throw new TransportError(401, 'token_expired', 'expired');
  }

  private session(uploadId: string): Session {
    const session = this.sessions.get(uploadId);
    if (!session) throw new TransportError(404, 'upload_not_found', 'unknown upload');
    if (session.state === 'expired') throw new TransportError(410, 'upload_expired', 'expired');
    return session;
  }

  async createUpload(body: CreateUploadBody, token: string, signal: AbortSignal, idempotencyKey?: string): Promise<CreatedUpload> {
    const created = await this.startSession(body, token, signal, idempotencyKey);
    if (this.loseNextCreateAnswers > 0) {
      this.loseNextCreateAnswers -= 1;
      throw new TransportError(null, null, 'the connection dropped before the answer arrived');
    }
    return created;
  }

  private async startSession(body: CreateUploadBody, token: string, signal: AbortSignal, idempotencyKey?: string): Promise<CreatedUpload> {
    await Promise.resolve();
    this.check(signal);
    this.auth(token);
    this.createKeys.push(idempotencyKey);
    if (idempotencyKey !== undefined && this.inFlightNextCreates > 0) {
      this.inFlightNextCreates -= 1;
      throw new TransportError(409, 'idempotency_key_in_flight', 'still being processed', null, { code: 'idempotency_key_in_flight' });
    }
    const name = body.study.patient_name ?? '';
    if (Array.from(name).length > 200) {
      // What FastAPI and the gateway's problem handler answer for StudyIn's max_length.
      const errors = [{ loc: ['body', 'study', 'patient_name'], msg: 'String should have at most 200 characters', type: 'string_too_long' }];
      const detail = 'study.patient_name: String should have at most 200 characters';
      throw new TransportError(422, 'validation_error', detail, null, { code: 'validation_error', status: 422, detail, errors });
    }
    const earlier = idempotencyKey === undefined ? undefined : this.byKey.get(idempotencyKey);
    if (earlier) {
      if (earlier.body !== JSON.stringify(body)) throw new TransportError(422, 'idempotency_key_reused', 'another body');
      return earlier.created;
    }
    if (this.duplicateUnlessForced && !body.force_upload) {
      throw new TransportError(409, 'duplicate_study', 'A study like this was sent 2 days ago.', null, {
        code: 'duplicate_study',
        duplicate_of: 'earlier-upload',
      });
    }
    const ordinal = this.nextId++;
    const id = `u${ordinal}`;
    const chunkSize = this.chunkSize;
    const session: Session = {
      id,
      ordinal,
      token: `tok-${id}`,
      chunkSize,
      state: 'created',
      files: body.files.map((file, i) => ({ file_id: `${id}-f${i}`, name: file.name, size: file.size, chunks: new Map() })),
    };
    this.sessions.set(id, session);
    const created: CreatedUpload = {
      upload_id: id,
      upload_token: session.token,
      chunk_size: chunkSize,
      expires_at: '2099-01-01T00:00:00Z',
      files: session.files.map((f) => ({ file_id: f.file_id, name: f.name, size: f.size, chunk_count: chunkCount(f.size, chunkSize) })),
    };
    if (idempotencyKey !== undefined) this.byKey.set(idempotencyKey, { body: JSON.stringify(body), created });
    return created;
  }

  async getUpload(uploadId: string, token: string, signal: AbortSignal): Promise<ServerUploadStatus> {
    await Promise.resolve();
    this.check(signal);
    this.auth(token);
    const session = this.session(uploadId);
    return {
      upload_id: uploadId,
      state: session.state,
      files: session.files.map((f) => ({
        file_id: f.file_id,
        missing_chunks: Array.from({ length: chunkCount(f.size, session.chunkSize) }, (_, i) => i).filter((i) => !f.chunks.has(i)),
      })),
      timeline: [],
      instances: [],
    };
  }

  async putChunk(request: PutChunkRequest): Promise<number> {
    await Promise.resolve();
    this.check(request.signal);
    this.puts.push({ uploadId: request.uploadId, fileId: request.fileId, index: request.index });
    const session = this.session(request.uploadId);
    if (request.uploadToken !== session.token) throw new TransportError(401, 'invalid_upload_token', 'bad token');
    if (session.tokenRevoked) throw new TransportError(401, 'upload_token_revoked', 'revoked', null, { code: 'upload_token_revoked' });
    // As the server's check_receiving: cancelled, completed or rejected uploads take no chunks.
    if (session.state !== 'created' && session.state !== 'receiving') {
      throw new TransportError(409, 'upload_not_receiving', `The upload is ${session.state}`, null, { code: 'upload_not_receiving', state: session.state });
    }
    if (this.failNextPuts > 0) {
      this.failNextPuts -= 1;
      throw new TransportError(503, null, 'busy');
    }
    const bytes = new Uint8Array(request.body);
    if (this.corruptNextPuts > 0) {
      this.corruptNextPuts -= 1;
      throw new TransportError(400, 'checksum_mismatch', 'checksum');
    }
    if ((await md5Base64(bytes)) !== request.md5) throw new TransportError(400, 'checksum_mismatch', 'checksum');
    const file = session.files.find((f) => f.file_id === request.fileId);
    if (!file) throw new TransportError(404, 'file_not_found', 'unknown file');
    request.onProgress(bytes.length);
    const stored = file.chunks.get(request.index);
    if (stored) {
      if (stored.length !== bytes.length || stored.some((b, i) => b !== bytes[i])) {
        throw new TransportError(409, 'chunk_conflict', 'conflict');
      }
      return 200;
    }
    file.chunks.set(request.index, bytes);
    if (session.state === 'created') session.state = 'receiving';
    const held = session.files.reduce((n, f) => n + f.chunks.size, 0);
    if (this.expireAfterStoredChunks !== null && held >= this.expireAfterStoredChunks && session.ordinal <= this.expiringSessions) {
      session.state = 'expired';
    }
    return 201;
  }

  async complete(uploadId: string, token: string, signal: AbortSignal): Promise<void> {
    await Promise.resolve();
    this.check(signal);
    this.auth(token);
    const session = this.session(uploadId);
    const missing = session.files.some((f) => f.chunks.size < chunkCount(f.size, session.chunkSize));
    if (missing) throw new TransportError(409, 'upload_incomplete', 'missing chunks');
    this.completions += 1;
    session.state = 'assembling';
  }

  /** The owner signs out everywhere: every upload token ends, the uploads stay. */
  revokeUploadTokens(): void {
    for (const session of this.sessions.values()) session.tokenRevoked = true;
  }

  async renewUploadToken(uploadId: string, token: string, signal: AbortSignal): Promise<IssuedUploadToken> {
    await Promise.resolve();
    this.check(signal);
    this.auth(token);
    const session = this.session(uploadId);
    session.token = `tok-${uploadId}-${this.renewals.length + 2}`;
    session.tokenRevoked = false;
    this.renewals.push({ uploadId, token: session.token });
    return { upload_id: uploadId, upload_token: session.token, expires_at: '2099-01-01T00:00:00Z' };
  }

  async cancel(uploadId: string, token: string, signal: AbortSignal): Promise<void> {
    await Promise.resolve();
    this.check(signal);
    this.auth(token);
    const session = this.session(uploadId);
    if (session.state === 'cancelled') return;
    // As the server's _CANCELLABLE (src/relaypacs/uploads/service.py): not once completion was accepted.
    if (!['created', 'receiving', 'rejected', 'failed'].includes(session.state)) {
      throw new TransportError(409, 'upload_not_cancellable', `The upload is ${session.state}`, null, {
        code: 'upload_not_cancellable',
        state: session.state,
      });
    }
    session.state = 'cancelled';
  }

  /** The bytes the gateway holds for a file, chunks joined in order. */
  assembled(uploadId: string, fileIndex: number): Uint8Array {
    const session = this.session(uploadId);
    const file = session.files[fileIndex];
    if (!file) throw new Error('no such file');
    const parts = [...file.chunks.entries()].sort(([a], [b]) => a - b).map(([, bytes]) => bytes);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}
