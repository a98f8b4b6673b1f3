/**
 * Counting down to a time the gateway gave (Retry-After), once a second, then acting: the
 * dashboard says "refresh in N s" and asks again by itself when N reaches 0.
 */
export function startCountdown(until: number, onTick: (secondsLeft: number) => void, onDone: () => void, now: () => number = () => Date.now()): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    const left = until - now();
    if (left <= 0) {
      onTick(0);
      onDone();
      return;
    }
    onTick(Math.ceil(left / 1000));
    // Wake on the next whole second left, so the figure changes when it should.
    timer = setTimeout(tick, left % 1000 || 1000);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** What the dashboard says while it waits; `shownFor`: the period of the figures still shown, if another. */
export function waitNote(secondsLeft: number, shownFor: string | null): string {
  const when = secondsLeft > 0 ? `in ${secondsLeft} s` : 'now';
  const base = `Too many dashboard requests — the figures will refresh ${when}.`;
  return shownFor ? `${base} Until then these are the figures for ${shownFor}.` : base;
}
