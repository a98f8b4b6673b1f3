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
      message: describeProblem(problem, error.response.status),
    };
  }
  return {
    status: null,
    code: null,
    problem: null,
    network: false,
    message: error instanceof Error ? error.message : 'Something went wrong.',
  };
}

export function describeProblem(problem: Problem | null, status: number): string {
  if (problem?.detail) return problem.detail;
  if (problem?.title) return problem.title;
  if (status === 429) return 'Too many attempts. Wait a minute and try again.';
  if (status >= 500) return 'The gateway had a problem. Try again in a moment.';
  return `The request failed (HTTP ${status}).`;
}
