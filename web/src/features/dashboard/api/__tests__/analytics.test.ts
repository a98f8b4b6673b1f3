import { beforeEach, describe, expect, it, vi } from 'vitest';

// The gateway cannot run inside Vitest: its HTTP client is replaced by one that counts requests.
const requests: string[] = [];
vi.mock('@/lib/api-client', () => ({
  api: {
    get: (path: string) => {
      requests.push(path);
      return Promise.resolve({ data: { path } });
    },
  },
}));

const { fetchSummary } = await import('../analytics');
const { DEFAULT_FILTERS } = await import('../../lib/period');

describe('the figures kept on the device', () => {
  beforeEach(() => {
    requests.length = 0;
  });

  it('are asked again when the same person is no longer an admin', async () => {
    // Unfiltered, the query is the same: everyone's figures to an admin, one's own otherwise.
    await fetchSummary('user-1', DEFAULT_FILTERS, true);
    await fetchSummary('user-1', DEFAULT_FILTERS, false);
    expect(requests).toHaveLength(2);
  });

  it('are reused for the same person in the same role', async () => {
    await fetchSummary('user-2', DEFAULT_FILTERS, false);
    await fetchSummary('user-2', DEFAULT_FILTERS, false);
    expect(requests).toHaveLength(1);
  });
});
