import { useEffect, useRef, useState } from 'react';

import { Dialog } from '@/components/dialog';
import { ProgressBar } from '@/components/progress-bar';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatBytes, formatDuration, formatRate } from '@/lib/format';

import { getUploadStatus } from '../api/uploads';
import type { EngineClient } from '../engine/client';
import type { JobView } from '../engine/types';
import { cancelWarning, storedInstanceCount, type PacsCheck } from '../lib/cancel-warning';

function statusLine(job: JobView, network: string): string {
  const progress = job.progress;
  if (job.state === 'paused') return 'Paused';
  if (progress?.waitingFor === 'network' || network === 'offline') return 'Offline — waiting for the network';
  if (progress?.waitingFor === 'sign-in') return 'Waiting for sign-in to be renewed';
  if (network === 'reconnecting' || progress?.retrying) return 'Reconnecting…';
  if (job.state === 'waiting') return 'Waiting to start';
  if (job.state === 'completing') return 'Finishing…';
  return 'Uploading';
}

/** Announces progress in 10 % steps and every change of state: enough for a screen reader, not noisy. */
function useAnnouncement(job: JobView, line: string, percent: number): string {
  const [message, setMessage] = useState('');
  const lastStep = useRef(-1);
  const lastLine = useRef('');
  useEffect(() => {
    const step = Math.floor(percent / 10);
    if (line !== lastLine.current) {
      lastLine.current = line;
      setMessage(`${line}, ${percent}%`);
    } else if (step !== lastStep.current && job.state === 'uploading') {
      setMessage(`${percent}% sent`);
    }
    lastStep.current = step;
  }, [line, percent, job.state]);
  return message;
}

/** How often the open cancel dialog asks again: instances may reach the PACS while it is open. */
const RECHECK_MS = 3_000;

/**
 * The cancel dialog's text, shown only while the dialog is open (each opening asks afresh): how
 * many of the upload's instances the gateway already stored in the PACS, since a gateway that
 * forwards while it receives sends them before the study is complete and keeps them on cancel.
 * A polite live region: the text changes in place when the gateway answers.
 */
function CancelWarning({ serverId, offline }: { serverId: string | undefined; offline: boolean }) {
  const [check, setCheck] = useState<PacsCheck>(() => (offline ? { kind: 'unknown' } : { kind: 'checking' }));
  useEffect(() => {
    // Offline the request would only wait for its timeout; back online, it is asked at once.
    if (!serverId || offline) return;
    let active = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ask = async () => {
      try {
        const status = await getUploadStatus(serverId);
        if (active) setCheck({ kind: 'known', stored: storedInstanceCount(status.instances) });
      } catch {
        // A count already known stays: stored instances never leave the PACS.
        if (active) setCheck((previous) => (previous.kind === 'known' ? previous : { kind: 'unknown' }));
      }
      if (active) timer = setTimeout(() => void ask(), RECHECK_MS);
    };
    void ask();
    return () => {
      active = false;
      clearTimeout(timer);
    };
  }, [serverId, offline]);
  return (
    <p aria-live="polite" data-testid="cancel-warning" data-check={check.kind}>
      {cancelWarning(serverId !== undefined, check)}
    </p>
  );
}

export function JobProgress({ job, client }: { job: JobView; client: EngineClient }) {
  const network = useNetworkStatus();
  const [confirmCancel, setConfirmCancel] = useState(false);
  const progress = job.progress;
  const sent = progress?.sentBytes ?? 0;
  const fraction = job.totalBytes > 0 ? sent / job.totalBytes : 0;
  const percent = Math.floor(fraction * 100);
  const line = statusLine(job, network);
  const announcement = useAnnouncement(job, line, percent);
  const paused = job.state === 'paused';
  // Once completion is asked for, the gateway may already have the study: it refuses a cancel.
  const cancellable = job.state !== 'completing';

  return (
    <div className="card" data-testid="job-progress" data-state={job.state}>
      <h2>Sending</h2>
      <p className={`job-status job-status--${paused ? 'paused' : network}`} data-testid="job-status-line">
        {line}
      </p>
      <ProgressBar value={fraction} label="Upload progress" />
      <p className="job-numbers">
        <span data-testid="job-percent">{percent}%</span> · {formatBytes(sent)} of {formatBytes(job.totalBytes)}
        {progress && !paused && !progress.waitingFor && network === 'online' ? (
          <>
            {' '}
            · {progress.rate > 0 ? formatRate(progress.rate) : 'measuring speed'}
            {progress.etaSeconds !== null ? ` · about ${formatDuration(progress.etaSeconds)} left` : ''}
          </>
        ) : null}
      </p>
      <p className="visually-hidden" aria-live="polite">
        {announcement}
      </p>
      <div className="actions">
        {paused ? (
          <button type="button" className="button button--primary" onClick={() => client.send({ type: 'resume', jobId: job.id })}>
            Resume
          </button>
        ) : (
          <button type="button" className="button" onClick={() => client.send({ type: 'pause', jobId: job.id })}>
            Pause
          </button>
        )}
        {cancellable ? (
          <button type="button" className="button button--danger" onClick={() => setConfirmCancel(true)}>
            Cancel upload
          </button>
        ) : null}
      </div>
      {job.files.length > 1 ? (
        <details className="file-progress">
          <summary>{job.files.length} files</summary>
          <ul>
            {job.files.map((file) => {
              const fileSent = progress?.files[file.index]?.sentBytes ?? 0;
              return (
                <li key={file.index}>
                  <span className="file-progress__name">{file.name}</span>
                  <span className="file-progress__numbers">
                    {formatBytes(fileSent)} / {formatBytes(file.size)}
                  </span>
                </li>
              );
            })}
          </ul>
        </details>
      ) : null}
      <Dialog
        open={confirmCancel && cancellable}
        title="Cancel this upload?"
        onClose={() => setConfirmCancel(false)}
        actions={
          <>
            <button
              type="button"
              className="button button--danger"
              onClick={() => {
                setConfirmCancel(false);
                client.send({ type: 'cancel', jobId: job.id });
              }}
            >
              Cancel upload
            </button>
            <button type="button" className="button" onClick={() => setConfirmCancel(false)}>
              Keep sending
            </button>
          </>
        }
      >
        {confirmCancel ? <CancelWarning serverId={job.serverId} offline={network === 'offline'} /> : null}
      </Dialog>
    </div>
  );
}
