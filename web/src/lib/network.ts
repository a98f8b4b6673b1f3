/**
 * What the app believes about the network: `online`, `offline` (the browser says so), or
 * `reconnecting` (the browser says online but the gateway has not answered yet).
 */

export type NetworkStatus = 'online' | 'offline' | 'reconnecting';

type Listener = (status: NetworkStatus) => void;

const PROBE_URL = '/healthz';
const listeners = new Set<Listener>();
let status: NetworkStatus = typeof navigator === 'undefined' || navigator.onLine ? 'online' : 'offline';
let probeTimer: ReturnType<typeof setTimeout> | undefined;
let probeDelay = 1_000;

function set(next: NetworkStatus): void {
  if (next === status) return;
  status = next;
  for (const listener of listeners) listener(status);
}

async function probe(): Promise<void> {
  clearTimeout(probeTimer);
  if (!navigator.onLine) {
    set('offline');
    return;
  }
  try {
    const response = await fetch(PROBE_URL, { cache: 'no-store' });
    if (response.ok) {
      probeDelay = 1_000;
      set('online');
      return;
    }
  } catch {
    // not reachable yet: keep probing below
  }
  set('reconnecting');
  probeDelay = Math.min(probeDelay * 2, 15_000);
  probeTimer = setTimeout(() => void probe(), probeDelay);
}

let started = false;

export const network = {
  get status(): NetworkStatus {
    return status;
  },
  start(): void {
    if (started || typeof window === 'undefined') return;
    started = true;
    window.addEventListener('offline', () => {
      clearTimeout(probeTimer);
      set('offline');
    });
    window.addEventListener('online', () => {
      set('reconnecting');
      probeDelay = 1_000;
      void probe();
    });
  },
  /** A request failed without an answer although the browser says online: check the gateway. */
  reportUnreachable(): void {
    if (status === 'online') {
      set('reconnecting');
      void probe();
    }
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
