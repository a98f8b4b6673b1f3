/** The engine's network edge: an interface so tests swap the network, not the logic. */
import {
  parseUploadStatus,
  type CreateUploadBody,
  type CreatedUpload,
  type IssuedUploadToken,
  type ServerUploadStatus,
} from './protocol';

/** A failed request. status null: no HTTP answer (offline, refused, reset or stalled). */
export class TransportError extends Error {
  constructor(
    readonly status: number | null,
    readonly code: string | null,
    message: string,
    readonly retryAfter: string | null = null,
    readonly body: unknown = null,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

export class AbortedError extends Error {
  constructor() {
    super('aborted');
    this.name = 'AbortedError';
  }
}

export interface PutChunkRequest {
  uploadId: string;
  fileId: string;
  index: number;
  body: ArrayBuffer;
  md5: string;
  uploadToken: string;
  signal: AbortSignal;
  /** bytes of this chunk sent so far */
  onProgress: (sent: number) => void;
}

export interface Transport {
  /** With an idempotency key, a repeat gets the upload the first request created (same answer). */
  createUpload(body: CreateUploadBody, token: string, signal: AbortSignal, idempotencyKey?: string): Promise<CreatedUpload>;
  getUpload(uploadId: string, token: string, signal: AbortSignal): Promise<ServerUploadStatus>;
  /** Resolves with the HTTP status (200 already stored, 201 stored). */
  putChunk(request: PutChunkRequest): Promise<number>;
  complete(uploadId: string, token: string, signal: AbortSignal): Promise<void>;
  cancel(uploadId: string, token: string, signal: AbortSignal): Promise<void>;
  /** A new upload token for one's own upload, asked with the sign-in; the previous one ends. */
  renewUploadToken(uploadId: string, token: string, signal: AbortSignal): Promise<IssuedUploadToken>;
}

function problemOf(body: unknown): { code: string | null; message: string | null } {
  if (typeof body !== 'object' || body === null) return { code: null, message: null };
  const record = body as Record<string, unknown>;
  const code = typeof record.code === 'string' ? record.code : null;
  const detail = typeof record.detail === 'string' ? record.detail : null;
  const title = typeof record.title === 'string' ? record.title : null;
  return { code, message: detail ?? title };
}

function safeJson(textBody: string): unknown {
  try {
    return JSON.parse(textBody) as unknown;
  } catch {
    return null;
  }
}

export interface HttpTransportOptions {
  apiBase: string;
  stallTimeoutMs: number;
  /** JSON calls are small: give up on one after this long and retry */
  requestTimeoutMs?: number;
}

/** fetch for the small JSON calls, XMLHttpRequest for chunks (upload progress drives stall detection). */
export function httpTransport(options: HttpTransportOptions): Transport {
  const base = options.apiBase;
  const timeout = options.requestTimeoutMs ?? 30_000;

  async function call(
    method: string,
    path: string,
    token: string,
    signal: AbortSignal,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<unknown> {
    const init: RequestInit = {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...extraHeaders,
      },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
      cache: 'no-store',
    };
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, init);
    } catch (error) {
      if (signal.aborted) throw new AbortedError();
      throw new TransportError(null, null, error instanceof Error ? error.message : 'network error');
    }
    const textBody = await response.text().catch(() => '');
    const json = safeJson(textBody);
    if (!response.ok) {
      const problem = problemOf(json);
      throw new TransportError(
        response.status,
        problem.code,
        problem.message ?? `HTTP ${response.status}`,
        response.headers.get('Retry-After'),
        json,
      );
    }
    return json;
  }

  return {
    createUpload: async (body, token, signal, idempotencyKey) =>
      (await call('POST', '/uploads', token, signal, body, idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {})) as CreatedUpload,
    getUpload: async (uploadId, token, signal) =>
      parseUploadStatus(await call('GET', `/uploads/${encodeURIComponent(uploadId)}`, token, signal)),
    complete: async (uploadId, token, signal) => {
      await call('POST', `/uploads/${encodeURIComponent(uploadId)}/complete`, token, signal, {});
    },
    cancel: async (uploadId, token, signal) => {
      await call('DELETE', `/uploads/${encodeURIComponent(uploadId)}`, token, signal);
    },
    renewUploadToken: async (uploadId, token, signal) =>
      (await call('POST', `/uploads/${encodeURIComponent(uploadId)}/token`, token, signal)) as IssuedUploadToken,
    putChunk: (request) =>
      new Promise<number>((resolve, reject) => {
        const url = `${base}/uploads/${encodeURIComponent(request.uploadId)}/files/${encodeURIComponent(request.fileId)}/chunks/${request.index}`;
        const xhr = new XMLHttpRequest();
        let stalled = false;
        let stallTimer: ReturnType<typeof setTimeout> | undefined;
        const arm = (): void => {
          clearTimeout(stallTimer);
          stallTimer = setTimeout(() => {
            stalled = true;
            xhr.abort();
          }, options.stallTimeoutMs);
        };
        const onAbort = (): void => xhr.abort();
        const finish = (): void => {
          clearTimeout(stallTimer);
          request.signal.removeEventListener('abort', onAbort);
        };
        xhr.open('PUT', url);
        xhr.setRequestHeader('Content-Type', 'application/octet-stream');
        xhr.setRequestHeader('Content-MD5', request.md5);
        xhr.setRequestHeader('X-Upload-Token', request.uploadToken);
        xhr.upload.onprogress = (event) => {
          arm();
          request.onProgress(event.loaded);
        };
        xhr.onprogress = arm;
        xhr.onload = () => {
          finish();
          if (xhr.status >= 200 && xhr.status < 300) {
            resolve(xhr.status);
            return;
          }
          const json = safeJson(xhr.responseText);
          const problem = problemOf(json);
          reject(
            new TransportError(xhr.status, problem.code, problem.message ?? `HTTP ${xhr.status}`, xhr.getResponseHeader('Retry-After'), json),
          );
        };
        xhr.onerror = () => {
          finish();
          reject(new TransportError(null, null, 'network error'));
        };
        xhr.onabort = () => {
          finish();
          reject(stalled ? new TransportError(null, null, 'the connection stalled') : new AbortedError());
        };
        if (request.signal.aborted) {
          finish();
          reject(new AbortedError());
          return;
        }
        request.signal.addEventListener('abort', onAbort);
        xhr.send(request.body);
        arm();
      }),
  };
}
