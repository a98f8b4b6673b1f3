/** Chunk arithmetic shared by the engine and its tests (the gateway uses the same rules). */

export interface ChunkTask {
  fileIndex: number;
  chunkIndex: number;
  start: number;
  end: number;
}

export function chunkCount(size: number, chunkSize: number): number {
  if (chunkSize <= 0) throw new Error('chunk size must be positive');
  // An empty file is still one (empty) chunk, so that it exists on the gateway.
  return Math.max(1, Math.ceil(size / chunkSize));
}

export function chunkRange(size: number, chunkSize: number, index: number): { start: number; end: number } {
  const count = chunkCount(size, chunkSize);
  if (!Number.isInteger(index) || index < 0 || index >= count) {
    throw new RangeError(`chunk ${index} is outside 0..${count - 1}`);
  }
  const start = index * chunkSize;
  return { start, end: Math.min(size, start + chunkSize) };
}

export function tasksFor(
  fileIndex: number,
  size: number,
  chunkSize: number,
  indexes: Iterable<number>,
): ChunkTask[] {
  const tasks: ChunkTask[] = [];
  for (const chunkIndex of indexes) {
    tasks.push({ fileIndex, chunkIndex, ...chunkRange(size, chunkSize, chunkIndex) });
  }
  return tasks;
}

export function allIndexes(size: number, chunkSize: number): number[] {
  return Array.from({ length: chunkCount(size, chunkSize) }, (_, i) => i);
}
