/** Resume decisions: from the gateway's view of an upload to the chunks still to send. */
import { allIndexes, tasksFor, type ChunkTask } from './chunking';
import { PAST_RECEIVING, type ServerUploadStatus } from './protocol';
import type { JobFile } from './types';

export type ResumePlan =
  | { kind: 'send'; tasks: ChunkTask[]; confirmedBytes: Map<number, number> }
  | { kind: 'complete' }
  | { kind: 'already-submitted' }
  /** `expired`: the session ran out of time (not cancelled, not unknown): a new one may be started */
  | { kind: 'gone'; reason: string; expired?: boolean };

/** Every chunk of every file: a session the gateway just created holds nothing yet. */
export function planFresh(files: JobFile[], chunkSize: number): ResumePlan {
  const tasks = files.flatMap((file) => tasksFor(file.index, file.size, chunkSize, allIndexes(file.size, chunkSize)));
  return { kind: 'send', tasks, confirmedBytes: new Map(files.map((f) => [f.index, 0])) };
}

export function planResume(files: JobFile[], chunkSize: number, status: ServerUploadStatus): ResumePlan {
  if (status.state === 'cancelled') return { kind: 'gone', reason: 'The upload was cancelled on the gateway.' };
  if (status.state === 'expired') {
    return { kind: 'gone', reason: 'The upload session expired before every chunk arrived. Start it again.', expired: true };
  }
  if (PAST_RECEIVING.has(status.state)) return { kind: 'already-submitted' };

  const byId = new Map(status.files.map((f) => [f.file_id, f]));
  const tasks: ChunkTask[] = [];
  const confirmedBytes = new Map<number, number>();
  for (const file of files) {
    const server = file.serverFileId ? byId.get(file.serverFileId) : undefined;
    if (!server) return { kind: 'gone', reason: `The gateway no longer knows the file ${file.name}.` };
    const missing = [...new Set(server.missing_chunks)].sort((a, b) => a - b);
    const pending = tasksFor(file.index, file.size, chunkSize, missing);
    tasks.push(...pending);
    confirmedBytes.set(file.index, file.size - pending.reduce((sum, t) => sum + (t.end - t.start), 0));
  }
  return tasks.length === 0 ? { kind: 'complete' } : { kind: 'send', tasks, confirmedBytes };
}

/** STAT before emergency before routine; oldest first within a level. */
const PRIORITY: Record<string, number> = { stat: 0, emergency: 1, routine: 2 };

export function queueOrder<T extends { createdAt: number; study: { service_level: string } }>(a: T, b: T): number {
  return (PRIORITY[a.study.service_level] ?? 3) - (PRIORITY[b.study.service_level] ?? 3) || a.createdAt - b.createdAt;
}
