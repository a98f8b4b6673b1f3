import { describe, expect, it } from 'vitest';

import {
  BACKOFF_MAX_MS,
  backoffDelay,
  DEFAULT_HEARTBEAT_MS,
  heartbeatPeriod,
  LiveEvents,
  SILENT_PERIODS,
  type LiveDeps,
  type SourceLike,
} from '../live-events';

/** An EventSource double: the test opens it, sends events, and breaks it. */
class FakeSource implements SourceLike {
  onopen: ((event: Event) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  closed = false;
  private readonly listeners = new Map<string, ((event: MessageEvent<string>) => void)[]>();

  constructor(readonly url: string) {}

  addEventListener(type: string, listener: (event: MessageEvent<string>) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close(): void {
    this.closed = true;
  }

  open(): void {
    this.onopen?.({} as Event);
  }

  emit(type: string, data: unknown, id = ''): void {
    const event = { data: JSON.stringify(data), lastEventId: id } as MessageEvent<string>;
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }

  fail(): void {
    this.onerror?.({} as Event);
  }

  get params(): URLSearchParams {
    return new URL(this.url, 'http://gateway').searchParams;
  }
}

function harness(options: { tickets?: (() => Promise<string>)[] } = {}) {
  const sources: FakeSource[] = [];
  const timers: { callback: () => void; ms: number; cleared: boolean }[] = [];
  let issued = 0;
  const deps: LiveDeps = {
    url: '/api/v1/notifications/stream',
    createSource: (url) => {
      const source = new FakeSource(url);
      sources.push(source);
      return source;
    },
    ticket: () => {
      const scripted = options.tickets?.shift();
      if (scripted) return scripted();
      issued += 1;
      return Promise.resolve(`ticket-${issued}`);
    },
    setTimer: (callback, ms) => {
      const timer = { callback, ms, cleared: false };
      timers.push(timer);
      return timer;
    },
    clearTimer: (handle) => {
      (handle as { cleared: boolean }).cleared = true;
      // Only live timers stay listed.
      const at = timers.indexOf(handle as (typeof timers)[number]);
      if (at >= 0) timers.splice(at, 1);
    },
    random: () => 1,
  };
  const live = new LiveEvents(deps);
  const flush = () => new Promise<void>((resolve) => setTimeout(resolve, 0));
  const fireTimers = async () => {
    const due = timers.filter((t) => !t.cleared);
    timers.length = 0;
    for (const timer of due) timer.callback();
    await flush();
  };
  const last = () => {
    const source = sources.at(-1);
    if (!source) throw new Error('no source opened');
    return source;
  };
  return { live, sources, timers, flush, fireTimers, last };
}

describe('LiveEvents', () => {
  it('opens the stream with a one-time ticket and hands events to subscribers', async () => {
    const { live, flush, last } = harness();
    const got: unknown[] = [];
    live.subscribe('notification', (data) => got.push(data));
    live.start();
    await flush();
    expect(last().params.get('ticket')).toBe('ticket-1');
    expect(last().params.has('last_event_id')).toBe(false);
    last().open();
    expect(live.status).toBe('open');
    last().emit('notification', { id: 'n1', type: 'report_ready' }, '41');
    expect(got).toEqual([{ id: 'n1', type: 'report_ready' }]);
    expect(live.lastEventId).toBe('41');
  });

  it('reconnects after an error with a fresh ticket and replays from the last event id', async () => {
    const { live, sources, timers, flush, fireTimers, last } = harness();
    const ids: (string | null)[] = [];
    live.subscribe('upload_state', (_data, id) => ids.push(id));
    live.start();
    await flush();
    last().open();
    last().emit('upload_state', { state: 'queued' }, '7');
    last().emit('upload_state', { state: 'forwarding' }, '9');
    const first = last();
    first.fail();
    // The spent source is closed at once (EventSource would retry with the used ticket).
    expect(first.closed).toBe(true);
    expect(live.status).toBe('waiting');
    expect(timers).toHaveLength(1);
    await fireTimers();
    expect(sources).toHaveLength(2);
    expect(last().params.get('ticket')).toBe('ticket-2');
    expect(last().params.get('last_event_id')).toBe('9');
    // The replay may repeat an event this client already has: it is handed out once.
    last().open();
    last().emit('upload_state', { state: 'forwarding' }, '9');
    last().emit('upload_state', { state: 'delivered' }, '12');
    expect(ids).toEqual(['7', '9', '12']);
    // Events of the old source, arriving late, are ignored.
    first.emit('upload_state', { state: 'late' }, '13');
    expect(ids).toEqual(['7', '9', '12']);
  });

  it('backs off with doubling delays while the gateway refuses, and resets once open', async () => {
    const failing = () => Promise.reject(new Error('503'));
    const { live, timers, flush, fireTimers, last } = harness({ tickets: [failing, failing, failing] });
    live.start();
    await flush();
    const delays: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      delays.push(timers.at(-1)!.ms);
      await fireTimers();
    }
    expect(delays).toEqual([1000, 2000, 4000]);
    last().open();
    last().fail();
    expect(timers.at(-1)!.ms).toBe(1000);
    expect(backoffDelay(30, 1)).toBe(BACKOFF_MAX_MS);
    expect(backoffDelay(0, 0)).toBe(500);
  });

  it('pauses while offline and reconnects at once when the network is back', async () => {
    const { live, sources, timers, flush, last } = harness();
    live.start();
    await flush();
    last().open();
    last().emit('notification', { id: 'a' }, '3');
    live.setOnline(false);
    expect(last().closed).toBe(true);
    expect(live.status).toBe('waiting');
    expect(timers.filter((t) => !t.cleared)).toHaveLength(0);
    live.setOnline(true);
    await flush();
    expect(sources).toHaveLength(2);
    expect(last().params.get('last_event_id')).toBe('3');
  });

  it('a ticket that arrives after going offline opens nothing', async () => {
    let release: (ticket: string) => void = () => undefined;
    const slow = () => new Promise<string>((resolve) => (release = resolve));
    const { live, sources, flush } = harness({ tickets: [slow] });
    live.start();
    await flush();
    live.setOnline(false);
    release('late-ticket');
    await flush();
    expect(sources).toHaveLength(0);
  });

  it('stop forgets the position: the next user starts a stream of their own', async () => {
    const { live, flush, last } = harness();
    live.start();
    await flush();
    last().open();
    last().emit('notification', { id: 'x' }, '5');
    live.stop();
    expect(live.status).toBe('idle');
    expect(last().closed).toBe(true);
    live.start();
    await flush();
    expect(last().params.has('last_event_id')).toBe(false);
  });

  it('tells screens about every (re)connection so they can refetch', async () => {
    const { live, flush, fireTimers, last } = harness();
    let opens = 0;
    live.onOpen(() => (opens += 1));
    live.start();
    await flush();
    last().open();
    last().fail();
    await fireTimers();
    last().open();
    expect(opens).toBe(2);
  });

  it('a stream silent for longer than its heartbeats allow is replaced, from the last event id', async () => {
    const { live, sources, timers, flush, last } = harness();
    live.start();
    await flush();
    last().open();
    // Until told otherwise the gateway beats every 15 s: silence is judged against that.
    expect(timers.map((t) => t.ms)).toEqual([DEFAULT_HEARTBEAT_MS * SILENT_PERIODS]);
    last().emit('notification', { id: 'n' }, '4');
    last().emit('heartbeat', { every: 5 });
    // Each event re-arms the one watchdog, sized from the announced period.
    expect(timers.map((t) => t.ms)).toEqual([5_000 * SILENT_PERIODS]);
    const silent = last();
    timers.shift()!.callback();
    expect(silent.closed).toBe(true);
    expect(live.status).toBe('waiting');
    expect(timers).toHaveLength(1); // the reconnection's backoff, nothing else
    timers.shift()!.callback();
    await flush();
    expect(sources).toHaveLength(2);
    expect(last().params.get('last_event_id')).toBe('4');
  });

  it('a heartbeat period is read defensively', () => {
    expect(heartbeatPeriod('{"every":15}')).toBe(15_000);
    expect(heartbeatPeriod('{"every":0.2}')).toBe(1_000);
    expect(heartbeatPeriod('{"every":100000}')).toBe(300_000);
    expect(heartbeatPeriod('{"every":-1}')).toBeNull();
    expect(heartbeatPeriod('{"every":"15"}')).toBeNull();
    expect(heartbeatPeriod('not json')).toBeNull();
  });

  it('unread counts carry no id and are always delivered', async () => {
    const { live, flush, fireTimers, last } = harness();
    const counts: unknown[] = [];
    live.subscribe('unread_count', (data) => counts.push(data));
    live.start();
    await flush();
    last().open();
    last().emit('unread_count', { count: 2 });
    last().fail();
    await fireTimers();
    last().open();
    last().emit('unread_count', { count: 2 });
    expect(counts).toEqual([{ count: 2 }, { count: 2 }]);
  });
});
