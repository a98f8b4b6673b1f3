/** RFC 7807 problems from the gateway, turned into messages a clinician can act on. */
import { isAxiosError } from 'axios';

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  [extra: string]: unknown;
}

export interface UserFacingError {
  status: number | null;
  code: string | null;
  message: string;
  problem: Problem | null;
  /** true when the request never reached the gateway (offline, DNS, connection refused) */
  network: boolean;
  /** seconds to wait before asking again, when the gateway said so (429 with Retry-After) */
  retryAfter: number | null;
}

/**
 * The gateway's problem codes whose own wording speaks to API clients (or could be clearer), in
 * words a clinician can act on. A code not listed keeps the gateway's detail.
 */
const CODE_MESSAGES: Record<string, string> = {
  password_change_required: 'Choose a new password before you carry on.',
  invalid_password: 'The current password is wrong.',
  weak_password: 'The new password does not meet every rule yet.',
  common_password: 'That password is on lists of common passwords. Choose another.',
  password_too_long: 'The password is too long: at most 72 bytes (fewer characters if it has accents or symbols).',
  password_contains_username: 'The password must not contain your username.',
};

/** Seconds from a Retry-After header (seconds or an HTTP date) or the problem's `retry_after`. */
export function retryAfterSeconds(header: unknown, problem: Problem | null, now = Date.now()): number | null {
  const text = typeof header === 'string' ? header.trim() : typeof header === 'number' ? String(header) : '';
  if (/^\d+$/.test(text)) return Math.max(1, Number(text));
  if (text !== '') {
    const at = Date.parse(text);
    if (!Number.isNaN(at)) return Math.max(1, Math.ceil((at - now) / 1000));
  }
  const fromBody = problem?.retry_after;
  return typeof fromBody === 'number' && Number.isFinite(fromBody) ? Math.max(1, Math.ceil(fromBody)) : null;
}

export function isProblem(value: unknown): value is Problem {
  return typeof value === 'object' && value !== null && ('code' in value || 'title' in value);
}

export function toUserFacingError(error: unknown): UserFacingError {
  if (isAxiosError(error)) {
    const data: unknown = error.response?.data;
    const problem = isProblem(data) ? data : null;
    if (!error.response) {
      return {
        status: null,
        code: null,
        problem: null,
        network: true,
        retryAfter: null,
        message: navigator.onLine
          ? 'The gateway cannot be reached. Check the connection and try again.'
          : 'You are offline. Try again when the network is back.',
      };
    }
    return {
      status: error.response.status,
      code: problem?.code ?? null,
      problem,
      network: false,
      retryAfter: error.response.status === 429 ? retryAfterSeconds(error.response.headers['retry-after'], problem) : null,
      message: describeProblem(problem, error.response.status),
    };
  }
  return {
    status: null,
    code: null,
    problem: null,
    network: false,
    retryAfter: null,
    message: error instanceof Error ? error.message : 'Something went wrong.',
  };
}

export function describeProblem(problem: Problem | null, status: number): string {
  const known = problem?.code ? CODE_MESSAGES[problem.code] : undefined;
  if (known) return known;
  if (problem?.detail) return problem.detail;
  if (problem?.title) return problem.title;
  if (status === 429) return 'Too many attempts. Wait a minute and try again.';
  if (status >= 500) return 'The gateway had a problem. Try again in a moment.';
  return `The request failed (HTTP ${status}).`;
}
