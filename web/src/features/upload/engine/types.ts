/** Shapes shared by the engine (in its Web Worker) and the screens that drive it. */

export type ServiceLevel = 'stat' | 'emergency' | 'routine';

export interface StudyMetadata {
  patient_name: string;
  patient_id?: string;
  study_date: string;
  modality: string;
  service_level: ServiceLevel;
  study_description?: string;
  clinical_history?: string;
}

/**
 * Where a queued upload stands on this device. `submitted` means the gateway accepted
 * completion (every chunk is durably stored there); what happens next is the server's state.
 */
export type JobState =
  | 'waiting'
  | 'uploading'
  | 'paused'
  | 'completing'
  | 'submitted'
  | 'duplicate'
  | 'failed'
  /** the user cancelled a job that has a session on the gateway; the gateway has not confirmed yet */
  | 'cancelling'
  | 'cancelled';

export interface JobFile {
  index: number;
  name: string;
  size: number;
  serverFileId?: string;
  chunkCount?: number;
  /** bytes the gateway confirmed when the job was last saved: the progress a reload shows */
  confirmedBytes?: number;
}

export interface UploadJob {
  id: string;
  createdAt: number;
  state: JobState;
  study: StudyMetadata;
  files: JobFile[];
  totalBytes: number;
  /** chunk size asked for (the user's preference); the gateway's answer wins */
  requestedChunkSize?: number;
  forceUpload: boolean;
  serverId?: string;
  uploadToken?: string;
  /**
   * The Idempotency-Key of this job's POST /uploads, saved before the request is sent: a retry
   * (even after the tab was closed) gets the session the gateway already opened, not a second one.
   */
  idempotencyKey?: string;
  chunkSize?: number;
  expiresAt?: string;
  /** user-facing reason when state is failed or duplicate; when submitted, why a cancel was refused */
  message?: string;
  /**
   * The gateway refused the study details (422 on POST /uploads): sending the same body again
   * cannot help, so the screens offer no "Try again".
   */
  detailsRefused?: boolean;
  /** the gateway's id of the earlier upload this one duplicates */
  duplicateOf?: string;
  submittedAt?: number;
  /**
   * New sessions the engine opened by itself because the gateway's had expired (a device offline
   * for more than a day): bounded, so a gateway that expires every session cannot loop it.
   */
  sessionRestarts?: number;
}

export interface FileBlobRecord {
  jobId: string;
  index: number;
  blob: Blob;
}

export interface FileProgress {
  index: number;
  sentBytes: number;
  size: number;
}

export interface JobProgress {
  sentBytes: number;
  totalBytes: number;
  /** bytes per second over the last few seconds */
  rate: number;
  etaSeconds: number | null;
  files: FileProgress[];
  /** the last request failed and the engine is backing off before the next try */
  retrying: boolean;
  /** the engine waits for the network (offline) or for a fresh sign-in token */
  waitingFor: 'network' | 'sign-in' | null;
}

/** What the screens see of a job: never the upload token (nor the key that seals it on the gateway). */
export type JobView = Omit<UploadJob, 'uploadToken' | 'idempotencyKey'> & { progress: JobProgress | null };

export type EngineCommand =
  /** `owner`: the user whose queue this is (the tab's signed-in user); null when not known */
  | { type: 'start'; owner?: string | null }
  | { type: 'enqueue'; jobId: string }
  | { type: 'pause'; jobId: string }
  | { type: 'resume'; jobId: string }
  | { type: 'cancel'; jobId: string }
  | { type: 'retry'; jobId: string }
  | { type: 'decide-duplicate'; jobId: string; send: boolean }
  | { type: 'forget'; jobId: string }
  | { type: 'online'; online: boolean }
  | { type: 'token'; token: string | null };

export type EngineEvent =
  | { type: 'snapshot'; jobs: JobView[]; standby: boolean }
  | { type: 'need-token' }
  | { type: 'submitted'; jobId: string; serverId: string };
