import { useEffect, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';

import { cachedUpload, type UploadSummary } from '../api/uploads';
import type { JobView } from '../engine/types';
import { useEngine } from '../hooks/use-engine';
import { cancellingNotice } from '../lib/cancel-warning';

import { JobProgress } from './job-progress';
import { ServerStatus } from './server-status';
import { StudySummary } from './study-summary';

function StudyHeader({ job }: { job: Pick<JobView, 'study' | 'totalBytes' | 'files'> }) {
  return (
    <StudySummary
      patientName={job.study.patient_name}
      modality={job.study.modality}
      studyDate={job.study.study_date}
      serviceLevel={job.study.service_level}
      description={job.study.study_description}
      files={{ count: job.files.length, bytes: job.totalBytes }}
    />
  );
}

/** The upload as the history on this device last saw it: what there is to show offline. */
function useLastKnown(id: string): UploadSummary | null {
  const [found, setFound] = useState<{ id: string; summary: UploadSummary | null } | null>(null);
  useEffect(() => {
    let stopped = false;
    cachedUpload(id)
      .then((summary) => {
        if (!stopped) setFound({ id, summary });
      })
      .catch(() => undefined); // no IndexedDB: nothing saved to show
    return () => {
      stopped = true;
    };
  }, [id]);
  return found?.id === id ? found.summary : null;
}

export function UploadDetailPage() {
  const { id = '' } = useParams();
  const navigate = useNavigate();
  const { client, snapshot } = useEngine();
  const network = useNetworkStatus();
  const job = snapshot.jobs.find((j) => j.id === id || j.serverId === id);
  const lastKnown = useLastKnown(job?.serverId ?? id);
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
        <ServerStatus key={id} serverId={id} lastKnown={lastKnown} withStudy />
        <p>
          <Link to="/uploads">All uploads</Link>
        </p>
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
      {/* e.g. the engine is sending the study again on a new session, the gateway's having expired */}
      {active && job.message ? <Alert tone="info">{job.message}</Alert> : null}
      {job.state === 'failed' ? (
        <Alert>
          <p>
            <strong>The upload stopped.</strong> {job.message}
          </p>
          <div className="actions">
            {/* The same details would be refused again: only a new upload can correct them. */}
            {job.detailsRefused ? null : (
              <button type="button" className="button button--primary" onClick={() => client.send({ type: 'retry', jobId: job.id })}>
                Try again
              </button>
            )}
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
      {job.state === 'cancelling' ? (
        <div className="card" data-testid="job-cancelling">
          <p role="status">{cancellingNotice(job.progress, network === 'offline')}</p>
        </div>
      ) : null}
      {job.state === 'cancelled' ? <Alert tone="info">This upload was cancelled.</Alert> : null}
      {/* Only a refused cancel leaves a message on a submitted job (the engine says so). */}
      {job.state === 'submitted' && job.message ? <Alert tone="warning">{job.message}</Alert> : null}
      {job.state === 'submitted' && job.serverId ? <ServerStatus key={job.serverId} serverId={job.serverId} lastKnown={lastKnown} /> : null}
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
