import { useEffect, useState } from 'react';
import { Link } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatBytes, formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { toUserFacingError } from '@/lib/problem';

import { cachedUploads, listUploads, type UploadSummary } from '../api/uploads';
import { useEngine } from '../hooks/use-engine';
import { onHistoryChange } from '../lib/history-changes';

import { describeState } from './server-status';

const LOCAL_STATE: Record<string, string> = {
  waiting: 'Waiting to send',
  uploading: 'Sending',
  completing: 'Finishing',
  paused: 'Paused',
  duplicate: 'Needs your decision',
  failed: 'Stopped',
  cancelling: 'Cancelling',
};

export function UploadsPage() {
  useDocumentTitle('Uploads');
  const network = useNetworkStatus();
  const { client, snapshot } = useEngine();
  const [history, setHistory] = useState<UploadSummary[] | null>(null);
  const [stale, setStale] = useState<string | null>(null);
  /** bumped when the history may have changed: fetching it again is the effect below */
  const [changes, setChanges] = useState(0);

  useEffect(() => onHistoryChange(client, liveEvents, () => setChanges((n) => n + 1)), [client]);

  useEffect(() => {
    let stopped = false;
    void cachedUploads().then((cached) => {
      if (!stopped) setHistory((current) => current ?? cached);
    });
    if (network !== 'offline') {
      listUploads()
        .then((fresh) => {
          if (stopped) return;
          setHistory(fresh);
          setStale(null);
        })
        .catch((error: unknown) => {
          if (!stopped) setStale(toUserFacingError(error).message);
        });
    }
    return () => {
      stopped = true;
    };
  }, [network, changes]);

  const onDevice = snapshot.jobs.filter((job) => job.state in LOCAL_STATE);

  return (
    <section aria-labelledby="uploads-title">
      <h1 id="uploads-title">Uploads</h1>
      <p>
        <Link className="button button--primary" to="/upload">
          New upload
        </Link>
      </p>
      {onDevice.length > 0 ? (
        <div className="card">
          <h2>On this device</h2>
          <ul className="upload-list">
            {onDevice.map((job) => {
              const percent = job.totalBytes && job.progress ? Math.floor((job.progress.sentBytes / job.totalBytes) * 100) : null;
              return (
                <li key={job.id}>
                  <Link to={`/uploads/${job.id}`} className="upload-list__item">
                    <span className="upload-list__title">{job.study.patient_name.replace(/\^/g, ' ')}</span>
                    <span className="muted">
                      {job.study.modality} · {job.study.study_date} · {formatBytes(job.totalBytes)}
                    </span>
                    <span className={`badge badge--${job.state}`}>
                      {LOCAL_STATE[job.state]}
                      {percent !== null && job.state === 'uploading' ? ` ${percent}%` : ''}
                    </span>
                  </Link>
                </li>
              );
            })}
          </ul>
        </div>
      ) : null}
      <div className="card">
        <h2>History</h2>
        {network === 'offline' ? (
          <Alert tone="info">You are offline: this is the list as it was last seen.</Alert>
        ) : stale ? (
          <Alert tone="info">{stale}</Alert>
        ) : null}
        {history === null ? <p role="status">Loading…</p> : null}
        {history?.length === 0 ? <p>No uploads yet.</p> : null}
        {history && history.length > 0 ? (
          <ul className="upload-list" data-testid="history">
            {history.map((item) => (
              <li key={item.upload_id}>
                <Link to={`/uploads/${item.upload_id}`} className="upload-list__item">
                  <span className="upload-list__title">{item.patient_name.replace(/\^/g, ' ')}</span>
                  <span className="muted">
                    {item.modality} · {item.study_date} · {formatBytes(item.bytes_total)} · {formatDateTime(item.created_at)}
                  </span>
                  <span className={`badge badge--${item.state}`}>{describeState(item.state)}</span>
                </Link>
              </li>
            ))}
          </ul>
        ) : null}
      </div>
    </section>
  );
}
