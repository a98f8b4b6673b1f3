import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { AbortedError, httpTransport, TransportError, type PutChunkRequest } from '../transport';

/** Just enough XMLHttpRequest for the chunk PUT: the test moves its bytes and answers. */
class FakeXhr {
  static last: FakeXhr | null = null;
  status = 0;
  responseText = '';
  headers: Record<string, string> = {};
  method = '';
  url = '';
  body: unknown = null;
  aborted = false;
  upload: { onprogress: ((e: { loaded: number }) => void) | null } = { onprogress: null };
  onprogress: (() => void) | null = null;
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  onabort: (() => void) | null = null;

  constructor() {
    FakeXhr.last = this;
  }

  open(method: string, url: string): void {
    this.method = method;
    this.url = url;
  }

  setRequestHeader(name: string, value: string): void {
    this.headers[name] = value;
  }

  getResponseHeader(name: string): string | null {
    return name === 'Retry-After' ? '7' : null;
  }

  send(body: unknown): void {
    this.body = body;
  }

  abort(): void {
    this.aborted = true;
    this.onabort?.();
  }

  respond(status: number, body: unknown): void {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload?.();
  }
}

function request(signal: AbortSignal, onProgress = vi.fn()): PutChunkRequest {
  return {
    uploadId: 'u 1',
    fileId: 'f1',
    index: 3,
    body: new ArrayBuffer(8),
    md5: 'bWQ1',
    uploadToken: 'tok',
    signal,
    onProgress,
  };
}

describe('chunk PUT over XMLHttpRequest', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.stubGlobal('XMLHttpRequest', FakeXhr);
  });

  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const transport = httpTransport({ apiBase: 'https://gw/api/v1', stallTimeoutMs: 1_000 });

  it('sends the bytes with Content-MD5 and the upload token to the chunk URL', async () => {
    const pending = transport.putChunk(request(new AbortController().signal));
    const xhr = FakeXhr.last!;
    expect(xhr.method).toBe('PUT');
    expect(xhr.url).toBe('https://gw/api/v1/uploads/u%201/files/f1/chunks/3');
    expect(xhr.headers).toMatchObject({ 'Content-MD5': 'bWQ1', 'X-Upload-Token': 'tok' });
    xhr.respond(201, {});
    await expect(pending).resolves.toBe(201);
  });

  it('abandons a request whose bytes stopped moving, as a network failure', async () => {
    const onProgress = vi.fn();
    const pending = transport.putChunk(request(new AbortController().signal, onProgress));
    const xhr = FakeXhr.last!;
    vi.advanceTimersByTime(900);
    xhr.upload.onprogress?.({ loaded: 4 }); // slow but moving: the stall clock restarts
    vi.advanceTimersByTime(900);
    expect(xhr.aborted).toBe(false);
    expect(onProgress).toHaveBeenCalledWith(4);
    vi.advanceTimersByTime(200);
    expect(xhr.aborted).toBe(true);
    const error = await pending.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransportError);
    expect((error as TransportError).status).toBeNull();
  });

  it('tells a pause (abort) from a stall', async () => {
    const controller = new AbortController();
    const pending = transport.putChunk(request(controller.signal));
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
  });

  it('reads the problem code and Retry-After of a refusal', async () => {
    const pending = transport.putChunk(request(new AbortController().signal));
    FakeXhr.last!.respond(429, { code: 'rate_limited', detail: 'Try again in 7 s' });
    const error = (await pending.catch((e: unknown) => e)) as TransportError;
    expect(error.status).toBe(429);
    expect(error.code).toBe('rate_limited');
    expect(error.retryAfter).toBe('7');
    expect(error.message).toBe('Try again in 7 s');
  });
});

describe('httpTransport session start', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('sends the Idempotency-Key with the request that opens a session', async () => {
    const fetchMock = vi.fn(async () =>
      Promise.resolve(new Response(JSON.stringify({ upload_id: 'u1' }), { status: 201 })),
    );
    vi.stubGlobal('fetch', fetchMock);
    const transport = httpTransport({ apiBase: '/api/v1', stallTimeoutMs: 1000 });
    const body = { study: {}, files: [{ name: 'a.dcm', size: 1 }] };

    await transport.createUpload(body, 'access', new AbortController().signal, 'k-1');
    await transport.createUpload(body, 'access', new AbortController().signal);

    const calls = fetchMock.mock.calls as unknown as [string, RequestInit][];
    const headers = calls.map(([, init]) => init.headers as Record<string, string>);
    expect(calls[0]?.[0]).toBe('/api/v1/uploads');
    expect(headers[0]?.['Idempotency-Key']).toBe('k-1');
    expect(headers[0]?.Authorization).toBe('Bearer access');
    expect(headers[1]).not.toHaveProperty('Idempotency-Key');
  });
});

describe('httpTransport new upload token', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('asks for it with the sign-in, never with an upload token', async () => {
    const issued = { upload_id: 'u 1', upload_token: 'new-token', expires_at: '2099-01-01T00:00:00Z' };
    const fetchMock = vi.fn(async () => Promise.resolve(new Response(JSON.stringify(issued), { status: 200 })));
    vi.stubGlobal('fetch', fetchMock);
    const transport = httpTransport({ apiBase: '/api/v1', stallTimeoutMs: 1000 });

    await expect(transport.renewUploadToken('u 1', 'access', new AbortController().signal)).resolves.toEqual(issued);

    const [url, init] = (fetchMock.mock.calls as unknown as [string, RequestInit][])[0]!;
    expect(url).toBe('/api/v1/uploads/u%201/token');
    expect(init.method).toBe('POST');
    const headers = init.headers as Record<string, string>;
    expect(headers.Authorization).toBe('Bearer access');
    expect(headers).not.toHaveProperty('X-Upload-Token');
  });
});
