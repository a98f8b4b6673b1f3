/** localStorage as a Map, for tests in Node. A "crash" puts back what it held earlier: the writes not yet on disk. */
export class MemoryStorage {
  entries = new Map<string, string>();
  get length(): number {
    return this.entries.size;
  }
  getItem(key: string): string | null {
    return this.entries.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.entries.set(key, value);
  }
  removeItem(key: string): void {
    this.entries.delete(key);
  }
  clear(): void {
    this.entries.clear();
  }
  key(index: number): string | null {
    return [...this.entries.keys()][index] ?? null;
  }

  /** What is on disk now. */
  snapshot(): Map<string, string> {
    return new Map(this.entries);
  }

  /** The browser is killed: localStorage comes back as it was at `onDisk` (IndexedDB as committed). */
  crash(onDisk: Map<string, string>): void {
    this.entries = new Map(onDisk);
  }
}

/** A fresh, empty localStorage for this test. */
export function installMemoryStorage(): MemoryStorage {
  const storage = new MemoryStorage();
  Object.defineProperty(globalThis, 'localStorage', { value: storage, configurable: true });
  return storage;
}
