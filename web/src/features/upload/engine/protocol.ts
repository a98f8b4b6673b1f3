/**
 * The upload protocol's JSON, as DESIGN.md describes it, read defensively: the engine must not
 * crash on a field the gateway adds or renames, it must only refuse to guess.
 */

export interface CreateUploadBody {
  study: Record<string, string | undefined>;
  files: { name: string; size: number }[];
  chunk_size?: number;
  force_upload?: boolean;
}

export interface CreatedUpload {
  upload_id: string;
  upload_token: string;
  chunk_size: number;
  expires_at: string;
  files: { file_id: string; name: string; size: number; chunk_count: number }[];
}

/** A new upload token for an upload whose token ended (`POST /uploads/{id}/token`). */
export interface IssuedUploadToken {
  upload_id: string;
  upload_token: string;
  expires_at: string;
}

/**
 * What the gateway answers a chunk sent with an upload token that no longer opens its upload:
 * ended when its owner signed out everywhere or changed the password, or replaced by a newer
 * token. The upload itself goes on: a new token is asked for with the sign-in.
 */
export const ENDED_UPLOAD_TOKEN = new Set(['upload_token_revoked', 'invalid_upload_token']);

/** Why the gateway could not use a file, or an entry of a ZIP (`entry`), after checking it. */
export interface FileProblem {
  entry: string | null;
  /** `invalid` (left out) or `skipped` (e.g. a DICOMDIR index, which is no image) */
  status: string;
  reason: string;
}

export interface ServerFileStatus {
  file_id: string;
  name?: string;
  size?: number;
  chunk_count?: number;
  missing_chunks: number[];
  /** what validation made of it: pending, valid, partial (a ZIP), invalid, skipped */
  status?: string;
  problems?: FileProblem[];
}

/** The study as the gateway recorded it when the upload began. */
export interface ServerStudy {
  patient_name: string;
  patient_id?: string | null;
  study_date: string;
  modality: string;
  service_level: string;
  study_description?: string | null;
}

export interface TimelineEntry {
  state: string;
  at: string;
  detail?: string | null;
}

export interface InstanceOutcome {
  sop_instance_uid?: string;
  series_instance_uid?: string;
  entry_name?: string | null;
  modality?: string | null;
  forward_status?: string;
  forward_reason?: string | null;
  [extra: string]: unknown;
}

export interface ServerUploadStatus {
  upload_id: string;
  state: string;
  bytes_received?: number;
  bytes_total?: number;
  files: ServerFileStatus[];
  timeline: TimelineEntry[];
  instances: InstanceOutcome[];
  error?: string | null;
  study?: ServerStudy | null;
  [extra: string]: unknown;
}

/** States after which no chunk may be sent any more: completion was accepted. */
export const PAST_RECEIVING = new Set([
  'assembling',
  'validated',
  'queued',
  'forwarding',
  'delivered',
  'partially_delivered',
  'rejected',
  'failed',
]);

/** States that end an upload on the gateway for good. */
export const TERMINAL = new Set(['delivered', 'partially_delivered', 'rejected', 'failed', 'cancelled', 'expired']);

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/**
 * Chunk indexes from a list that may mix plain indexes and inclusive [first, last] ranges
 * (the gateway sends ranges so that a 2 GB file's status stays small).
 */
export function expandIndexes(value: unknown): number[] | null {
  if (!Array.isArray(value)) return null;
  const out: number[] = [];
  for (const item of value) {
    if (Number.isInteger(item)) {
      out.push(item as number);
    } else if (Array.isArray(item) && item.length === 2 && Number.isInteger(item[0]) && Number.isInteger(item[1])) {
      const [first, last] = item as [number, number];
      if (last < first || last - first > 10_000_000) return null;
      for (let i = first; i <= last; i += 1) out.push(i);
    } else {
      return null;
    }
  }
  return out;
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The form's names for the fields of POST /uploads the gateway may refuse. */
const FIELD_LABELS: Record<string, string> = {
  'study.patient_name': 'Patient name',
  'study.patient_id': 'Patient ID',
  'study.study_date': 'Study date',
  'study.modality': 'Modality',
  'study.study_description': 'Study description',
  'study.clinical_history': 'Clinical history',
  'study.service_level': 'Service level',
};

/**
 * The fields a 422 `validation_error` names (its `errors`: FastAPI's loc and msg), as the form
 * calls them: "Modality: not a DICOM modality code (…)". Falls back on the problem's detail.
 */
export function refusedFields(problem: unknown): string {
  const body = asRecord(problem);
  const errors = Array.isArray(body.errors) ? body.errors.map(asRecord) : [];
  const named = errors.map((error) => {
    const loc = (Array.isArray(error.loc) ? error.loc : []).filter((part) => part !== 'body').map(String);
    const path = loc.join('.');
    const where = FIELD_LABELS[path] ?? (loc[0] === 'files' && loc[2] === 'name' ? 'File name' : path || 'The request');
    const why = (text(error.msg) ?? 'not accepted').replace(/^Value error, /, '');
    return `${where}: ${why}`;
  });
  return [...new Set(named)].join('; ') || text(body.detail) || 'the study details were not accepted';
}

function parseProblems(value: unknown): FileProblem[] {
  if (!Array.isArray(value)) return [];
  return value.map((raw): FileProblem => {
    const problem = asRecord(raw);
    return {
      entry: text(problem.entry) ?? null,
      status: text(problem.status) ?? 'invalid',
      reason: text(problem.reason) ?? text(problem.detail) ?? '',
    };
  });
}

function parseStudy(value: unknown): ServerStudy | null {
  const study = asRecord(value);
  const patient = text(study.patient_name);
  if (patient === undefined) return null;
  return {
    patient_name: patient,
    patient_id: text(study.patient_id) ?? null,
    study_date: text(study.study_date) ?? '',
    modality: text(study.modality) ?? '',
    service_level: text(study.service_level) ?? '',
    study_description: text(study.study_description) ?? null,
  };
}

export function parseUploadStatus(json: unknown): ServerUploadStatus {
  const body = asRecord(json);
  const files = (Array.isArray(body.files) ? body.files : []).map((raw): ServerFileStatus => {
    const file = asRecord(raw);
    const chunkCount = typeof file.chunk_count === 'number' ? file.chunk_count : undefined;
    let missing = expandIndexes(file.missing_chunks) ?? expandIndexes(file.missing);
    const received = expandIndexes(file.received_chunks);
    if (!missing && received && chunkCount !== undefined) {
      const have = new Set(received);
      missing = Array.from({ length: chunkCount }, (_, i) => i).filter((i) => !have.has(i));
    }
    if (!missing) throw new Error('the gateway did not say which chunks are missing');
    return {
      file_id: String(file.file_id ?? file.id),
      name: text(file.name),
      size: typeof file.size === 'number' ? file.size : undefined,
      chunk_count: chunkCount,
      missing_chunks: missing,
      status: text(file.status),
      problems: parseProblems(file.problems),
    };
  });
  const timeline = (Array.isArray(body.timeline) ? body.timeline : []).map((raw): TimelineEntry => {
    const entry = asRecord(raw);
    return {
      state: text(entry.state) ?? text(entry.to_state) ?? 'unknown',
      at: text(entry.at) ?? text(entry.created_at) ?? text(entry.occurred_at) ?? '',
      detail: text(entry.detail) ?? text(entry.reason) ?? null,
    };
  });
  return {
    ...body,
    upload_id: String(body.upload_id ?? body.id),
    state: text(body.state) ?? 'unknown',
    bytes_received: typeof body.bytes_received === 'number' ? body.bytes_received : undefined,
    bytes_total: typeof body.bytes_total === 'number' ? body.bytes_total : undefined,
    files,
    timeline,
    instances: Array.isArray(body.instances) ? (body.instances as InstanceOutcome[]) : [],
    error: text(body.failure_reason) ?? text(body.error) ?? null,
    study: parseStudy(body.study),
  };
}
