/**
 * The gateway's live stream (Server-Sent Events on GET /notifications/stream), shared by every
 * screen of this tab.
 *
 * A browser's EventSource cannot send a bearer header, so each connection redeems a one-time
 * ticket (POST /notifications/stream-ticket). That also means EventSource's own reconnection
 * (same URL, same spent ticket) can never succeed: on any error this client closes the source
 * and opens a new one with a fresh ticket and `last_event_id=` of the last event it saw, so the
 * gateway replays what was missed. Reconnection backs off (with jitter) and pauses while the
 * browser is offline. The class is headless: the EventSource, the ticket and the timers are
 * passed in, so Vitest drives it with fakes.
 */
import { env } from '@/config/env';

import { api } from './api-client';
import { network } from './network';
import { tokens } from './tokens';

export type LiveEventType = 'notification' | 'unread_count' | 'upload_state';
export const LIVE_EVENT_TYPES: readonly LiveEventType[] = ['notification', 'unread_count', 'upload_state'];

/** idle: not started; connecting: asking for a ticket or opening; open: receiving; waiting: offline or backing off */
export type LiveStatus = 'idle' | 'connecting' | 'open' | 'waiting';

export interface SourceLike {
  onopen: ((event: Event) => void) | null;
  onerror: ((event: Event) => void) | null;
  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void;
  close(): void;
}

export interface LiveDeps {
  /** the stream's URL without a query */
  url: string;
  createSource(url: string): SourceLike;
  /** a one-time ticket; rejects when none can be had now */
  ticket(): Promise<string>;
  setTimer(callback: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  random(): number;
}

type Handler = (data: unknown, id: string | null) => void;
type StatusListener = (status: LiveStatus) => void;

export const BACKOFF_BASE_MS = 1_000;
export const BACKOFF_MAX_MS = 30_000;
const REMEMBERED_IDS = 512;
/** The gateway's heartbeat period until its first heartbeat says otherwise. */
export const DEFAULT_HEARTBEAT_MS = 15_000;
/**
 * After this many heartbeat periods without any event the connection is taken for dead: a phone
 * that changed networks can leave a stream that never errors and never delivers.
 */
export const SILENT_PERIODS = 3;

/** The delay before reconnection attempt `attempt` (0-based): doubling, capped, half jittered. */
export function backoffDelay(attempt: number, random: number): number {
  const ceiling = Math.min(BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16), BACKOFF_MAX_MS);
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

export class LiveEvents {
  private readonly handlers = new Map<LiveEventType, Set<Handler>>();
  private readonly statusListeners = new Set<StatusListener>();
  private readonly openListeners = new Set<() => void>();
  private source: SourceLike | null = null;
  private timer: unknown = null;
  private watchdog: unknown = null;
  private heartbeatMs = DEFAULT_HEARTBEAT_MS;
  private running = false;
  private online = true;
  private attempt = 0;
  /** bumped by every connect/stop, so a ticket that arrives late opens nothing */
  private generation = 0;
  private lastId: string | null = null;
  private readonly seen: string[] = [];
  private currentStatus: LiveStatus = 'idle';

  constructor(private readonly deps: LiveDeps) {}

  get status(): LiveStatus {
    return this.currentStatus;
  }

  /** The id of the last event received (sent as last_event_id on the next connection). */
  get lastEventId(): string | null {
    return this.lastId;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.attempt = 0;
    if (this.online) void this.connect();
    else this.setStatus('waiting');
  }

  /** Signed out: close, and forget the position (the next user's stream is another one). */
  stop(): void {
    this.running = false;
    this.generation += 1;
    this.closeSource();
    this.clearTimer();
    this.lastId = null;
    this.seen.length = 0;
    this.setStatus('idle');
  }

  setOnline(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    if (!this.running) return;
    if (!online) {
      this.generation += 1;
      this.closeSource();
      this.clearTimer();
      this.setStatus('waiting');
      return;
    }
    // Back online: try now, not after the backoff that piled up while offline.
    this.attempt = 0;
    this.clearTimer();
    if (!this.source) void this.connect();
  }

  subscribe(type: LiveEventType, handler: Handler): () => void {
    let set = this.handlers.get(type);
    if (!set) {
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  onStatus(listener: StatusListener): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Called after every (re)connection: a screen may refetch what the stream cannot replay. */
  onOpen(listener: () => void): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  private async connect(): Promise<void> {
    this.generation += 1;
    const generation = this.generation;
    this.closeSource();
    this.clearTimer();
    this.setStatus('connecting');
    let ticket: string;
    try {
      ticket = await this.deps.ticket();
    } catch {
      if (generation === this.generation && this.running && this.online) this.retryLater();
      return;
    }
    if (generation !== this.generation || !this.running || !this.online) return;
    const query = new URLSearchParams({ ticket });
    if (this.lastId !== null) query.set('last_event_id', this.lastId);
    const source = this.deps.createSource(`${this.deps.url}?${query.toString()}`);
    this.source = source;
    this.armWatchdog(source);
    source.onopen = () => {
      if (this.source !== source) return;
      this.armWatchdog(source);
      this.attempt = 0;
      this.setStatus('open');
      for (const listener of this.openListeners) listener();
    };
    source.onerror = () => {
      if (this.source !== source) return;
      // EventSource would retry with the spent ticket: take over with a fresh one.
      this.closeSource();
      if (this.running && this.online) this.retryLater();
    };
    for (const type of LIVE_EVENT_TYPES) {
      source.addEventListener(type, (event) => {
        if (this.source !== source) return;
        this.armWatchdog(source);
        this.receive(type, event);
      });
    }
    source.addEventListener('heartbeat', (event) => {
      if (this.source !== source) return;
      this.heartbeatMs = heartbeatPeriod(event.data) ?? this.heartbeatMs;
      this.armWatchdog(source);
    });
  }

  private armWatchdog(source: SourceLike): void {
    this.disarmWatchdog();
    this.watchdog = this.deps.setTimer(() => {
      this.watchdog = null;
      if (this.source !== source) return;
      this.closeSource();
      if (this.running && this.online) this.retryLater();
    }, this.heartbeatMs * SILENT_PERIODS);
  }

  private disarmWatchdog(): void {
    if (this.watchdog !== null) this.deps.clearTimer(this.watchdog);
    this.watchdog = null;
  }

  private receive(type: LiveEventType, event: MessageEvent<string>): void {
    const id = event.lastEventId || null;
    // Numbered events only: the unread count sent on connect carries none and is always news.
    if (id !== null && type !== 'unread_count') {
      if (this.seen.includes(id)) return;
      this.seen.push(id);
      if (this.seen.length > REMEMBERED_IDS) this.seen.shift();
    }
    if (id !== null) this.lastId = id;
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    for (const handler of this.handlers.get(type) ?? []) {
      try {
        handler(data, id);
      } catch (error) {
        console.error('live event handler failed', error);
      }
    }
  }

  private retryLater(): void {
    const delay = backoffDelay(this.attempt, this.deps.random());
    this.attempt += 1;
    this.setStatus('waiting');
    this.timer = this.deps.setTimer(() => {
      this.timer = null;
      if (this.running && this.online) void this.connect();
    }, delay);
  }

  private closeSource(): void {
    this.disarmWatchdog();
    if (!this.source) return;
    const source = this.source;
    this.source = null;
    source.onopen = null;
    source.onerror = null;
    source.close();
  }

  private clearTimer(): void {
    if (this.timer !== null) this.deps.clearTimer(this.timer);
    this.timer = null;
  }

  private setStatus(status: LiveStatus): void {
    if (status === this.currentStatus) return;
    this.currentStatus = status;
    for (const listener of this.statusListeners) listener(status);
  }
}

/** The period a heartbeat announces (`{"every": seconds}`), kept within 1 s to 5 min. */
export function heartbeatPeriod(data: string): number | null {
  try {
    const every = (JSON.parse(data) as { every?: unknown }).every;
    if (typeof every !== 'number' || !Number.isFinite(every) || every <= 0) return null;
    return Math.min(Math.max(every * 1000, 1_000), 300_000);
  } catch {
    return null;
  }
}

/** This tab's stream. */
export const liveEvents = new LiveEvents({
  url: `${env.apiBase}/notifications/stream`,
  createSource: (url) => new EventSource(url),
  ticket: async () => (await api.post<{ ticket: string }>('/notifications/stream-ticket')).data.ticket,
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  random: () => Math.random(),
});

/**
 * Keeps the stream open while signed in and online; returns the function that stops it.
 * Call from the signed-in shell (several calls share the one stream).
 */
let users = 0;
let unwire: (() => void) | null = null;

export function startLiveEvents(): () => void {
  users += 1;
  if (users === 1) {
    liveEvents.setOnline(network.status !== 'offline');
    const offNetwork = network.subscribe((status) => liveEvents.setOnline(status !== 'offline'));
    const offTokens = tokens.subscribe((value) => {
      // Signed out (here or in another tab): close. Tokens that arrive later: open (idempotent).
      if (value === null) liveEvents.stop();
      else liveEvents.start();
    });
    if (tokens.get()) liveEvents.start();
    unwire = () => {
      offNetwork();
      offTokens();
      liveEvents.stop();
    };
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    users -= 1;
    if (users === 0) {
      unwire?.();
      unwire = null;
    }
  };
}
