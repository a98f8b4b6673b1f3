/**
 * IndexedDB (through Dexie): the queue, the files themselves, and the last known upload history,
 * so a reload, a crashed tab or a restarted browser loses nothing and history reads offline.
 */
import Dexie, { type Table } from 'dexie';

import type { FileBlobRecord, UploadJob } from './types';

export interface HistoryEntry {
  upload_id: string;
  state: string;
  created_at: string;
  /** the whole summary the gateway returned, shown as is */
  summary: Record<string, unknown>;
}

export class RelayDatabase extends Dexie {
  jobs!: Table<UploadJob, string>;
  blobs!: Table<FileBlobRecord, [string, number]>;
  history!: Table<HistoryEntry, string>;

  constructor(name = 'relaypacs') {
    super(name);
    this.version(1).stores({
      jobs: 'id, state, createdAt, serverId',
      blobs: '[jobId+index], jobId',
      history: 'upload_id, created_at',
    });
  }
}

export interface JobStore {
  listJobs(): Promise<UploadJob[]>;
  getJob(jobId: string): Promise<UploadJob | undefined>;
  putJob(job: UploadJob): Promise<void>;
  deleteJob(jobId: string): Promise<void>;
  /** Adds a job and its files in one transaction: either both are kept or neither. */
  addJob(job: UploadJob, files: Blob[]): Promise<void>;
  readChunk(jobId: string, fileIndex: number, start: number, end: number): Promise<ArrayBuffer>;
  deleteBlobs(jobId: string): Promise<void>;
}

async function blobBytes(blob: Blob): Promise<ArrayBuffer> {
  if (typeof blob.arrayBuffer === 'function') return blob.arrayBuffer();
  // Older engines (and some test doubles) only have FileReader.
  return new Response(blob).arrayBuffer();
}

export function dexieJobStore(db: RelayDatabase): JobStore {
  const cache = new Map<string, Blob>();
  return {
    listJobs: () => db.jobs.toArray(),
    getJob: (jobId) => db.jobs.get(jobId),
    putJob: async (job) => {
      await db.jobs.put(job);
    },
    deleteJob: async (jobId) => {
      await db.transaction('rw', db.jobs, db.blobs, async () => {
        await db.blobs.where('jobId').equals(jobId).delete();
        await db.jobs.delete(jobId);
      });
      for (const key of cache.keys()) if (key.startsWith(`${jobId}:`)) cache.delete(key);
    },
    addJob: async (job, files) => {
      await db.transaction('rw', db.jobs, db.blobs, async () => {
        await db.blobs.bulkPut(files.map((blob, index) => ({ jobId: job.id, index, blob })));
        await db.jobs.put(job);
      });
    },
    readChunk: async (jobId, fileIndex, start, end) => {
      const key = `${jobId}:${fileIndex}`;
      let blob = cache.get(key);
      if (!blob) {
        const record = await db.blobs.get([jobId, fileIndex]);
        if (!record) throw new Error('the file is no longer stored on this device');
        blob = record.blob;
        cache.set(key, blob);
      }
      return blobBytes(blob.slice(start, end));
    },
    deleteBlobs: async (jobId) => {
      await db.blobs.where('jobId').equals(jobId).delete();
      for (const key of cache.keys()) if (key.startsWith(`${jobId}:`)) cache.delete(key);
    },
  };
}
