/**
 * The dashboard's answers, kept in memory per question (viewer + path + query).
 *
 * The gateway allows a user few analytics reads a minute (PRD NFR-SEC-03: 10), and each period
 * costs two (summary and trends). So an answer is used as it is while fresh, and shown at once
 * while kept (refreshed in the background) — flicking between periods spends nothing then.
 */
export interface Kept<T> {
  value: T;
  /** younger than the fresh time: no need to ask again */
  fresh: boolean;
}

export class AnswerCache {
  private readonly answers = new Map<string, { at: number; value: unknown }>();
  private readonly asking = new Map<string, Promise<unknown>>();

  constructor(
    private readonly freshMs: number,
    private readonly keepMs: number,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** The kept answer to `key`, fresh or not; undefined when none is kept (or it is too old). */
  peek<T>(key: string): Kept<T> | undefined {
    const hit = this.answers.get(key);
    if (!hit) return undefined;
    const age = this.now() - hit.at;
    if (age >= this.keepMs) {
      this.answers.delete(key);
      return undefined;
    }
    return { value: hit.value as T, fresh: age < this.freshMs };
  }

  /** A fresh kept answer, or the gateway's (asked once however many wait for it). A failure is not kept. */
  load<T>(key: string, ask: () => Promise<T>): Promise<T> {
    const kept = this.peek<T>(key);
    if (kept?.fresh) return Promise.resolve(kept.value);
    const pending = this.asking.get(key);
    if (pending) return pending as Promise<T>;
    const answer = ask()
      .then((value) => {
        this.answers.set(key, { at: this.now(), value });
        return value;
      })
      .finally(() => this.asking.delete(key));
    this.asking.set(key, answer);
    return answer;
  }

  clear(): void {
    this.answers.clear();
    this.asking.clear();
  }
}
