/** Build-time settings, validated once at start so a bad build fails loudly, not half-way. */

function apiBase(value: unknown): string {
  const base = typeof value === 'string' && value !== '' ? value : '/api/v1';
  if (!base.startsWith('/') && !/^https?:\/\//.test(base)) {
    throw new Error(`VITE_API_BASE must be a path or an http(s) URL, got ${base}`);
  }
  return base.replace(/\/$/, '');
}

export const env = {
  apiBase: apiBase(import.meta.env.VITE_API_BASE),
  /** Chunks sent at once per upload: 3–4 keeps a bad link busy without starving it. */
  parallelChunks: 4,
  /** A chunk request with no byte moving for this long is abandoned and retried. */
  stallTimeoutMs: 30_000,
  /** How often the end state of a submitted upload is polled (until server-sent events land). */
  statusPollMs: 2_000,
} as const;
