import { useEffect, useRef } from 'react';
import { Link, useNavigate, useParams } from 'react-router';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { formatBytes } from '@/lib/format';

import type { JobView } from '../engine/types';
import { useEngine } from '../hooks/use-engine';

import { JobProgress } from './job-progress';
import { ServerStatus } from './server-status';
import { SERVICE_LEVELS } from './study-form';

function StudyHeader({ job }: { job: Pick<JobView, 'study' | 'totalBytes' | 'files'> }) {
  const level = SERVICE_LEVELS.find((l) => l.value === job.study.service_level);
  return (
    <div className="study-header">
      <p className="study-header__patient">{job.study.patient_name.replace(/\^/g, ' ')}</p>
      <p className="muted">
        {job.study.modality} · {job.study.study_date} · <span className={`badge badge--${job.study.service_level}`}>{level?.label}</span> ·{' '}
        {job.files.length} {job.files.length === 1 ? 'file' : 'files'}, {formatBytes(job.totalBytes)}
      </p>
      {job.study.study_description ? <p>{job.study.study_description}</p> : null}
    </div>
  );
}

export function UploadDetailPage() {
  const { id = '' } = useParams();
  const navigate = useNavigate();
  const { client, snapshot } = useEngine();
  const job = snapshot.jobs.find((j) => j.id === id || j.serverId === id);
  useDocumentTitle(job ? `Upload for ${job.study.patient_name}` : 'Upload');
  const headingRef = useRef<HTMLHeadingElement>(null);
  useEffect(() => headingRef.current?.focus(), []);

  if (!snapshot.ready && !job) {
    return (
      <section aria-labelledby="upload-title">
        <h1 id="upload-title" ref={headingRef} tabIndex={-1}>
          Upload
        </h1>
        <p role="status">{snapshot.standby ? 'Uploads are running in another tab of RelayPACS.' : 'Loading…'}</p>
      </section>
    );
  }

  if (!job) {
    // Not queued on this device (sent from elsewhere, or cleaned up): the gateway's view only.
    return (
      <section aria-labelledby="upload-title">
        <h1 id="upload-title" ref={headingRef} tabIndex={-1}>
          Upload
        </h1>
        <ServerStatus serverId={id} />
        <Link to="/uploads">All uploads</Link>
      </section>
    );
  }

  const active = ['waiting', 'uploading', 'completing', 'paused'].includes(job.state);
  return (
    <section aria-labelledby="upload-title">
      <h1 id="upload-title" ref={headingRef} tabIndex={-1}>
        Upload
      </h1>
      <StudyHeader job={job} />
      {active ? <JobProgress job={job} client={client} /> : null}
      {job.state === 'failed' ? (
        <Alert>
          <p>
            <strong>The upload stopped.</strong> {job.message}
          </p>
          <div className="actions">
            <button type="button" className="button button--primary" onClick={() => client.send({ type: 'retry', jobId: job.id })}>
              Try again
            </button>
            <button
              type="button"
              className="button"
              onClick={() => {
                client.send({ type: 'forget', jobId: job.id });
                void navigate('/uploads');
              }}
            >
              Discard
            </button>
          </div>
        </Alert>
      ) : null}
      {job.state === 'cancelled' ? <Alert tone="info">This upload was cancelled.</Alert> : null}
      {job.state === 'submitted' && job.serverId ? <ServerStatus serverId={job.serverId} /> : null}
      <Dialog
        open={job.state === 'duplicate'}
        title="This study may already have been sent"
        onClose={() => undefined}
        dismissible={false}
        actions={
          <>
            <button type="button" className="button button--primary" onClick={() => client.send({ type: 'decide-duplicate', jobId: job.id, send: true })}>
              Send anyway
            </button>
            <button
              type="button"
              className="button"
              onClick={() => {
                client.send({ type: 'decide-duplicate', jobId: job.id, send: false });
                void navigate('/uploads');
              }}
            >
              Don&apos;t send
            </button>
          </>
        }
      >
        {/* Not the gateway's problem detail: it speaks to API clients (force_upload=true). */}
        <p>You sent a study with the same patient name, study date and modality recently.</p>
        <p>Send it anyway only if this is a different study (for example a repeat scan).</p>
        {job.duplicateOf ? (
          <p>
            <Link to={`/uploads/${job.duplicateOf}`}>See the earlier upload</Link>
          </p>
        ) : null}
      </Dialog>
      <p>
        <Link to="/uploads">All uploads</Link>
      </p>
    </section>
  );
}
