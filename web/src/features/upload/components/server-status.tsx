import { useEffect, useState } from 'react';

import { Alert } from '@/components/alert';
import { env } from '@/config/env';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatBytes, formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { toUserFacingError } from '@/lib/problem';

import { getUploadStatus, type UploadSummary } from '../api/uploads';
import { TERMINAL, type ServerUploadStatus } from '../engine/protocol';
import { leftOutFiles, leftOutHeadline } from '../lib/left-out';

import { StudySummary, type StudySummaryProps } from './study-summary';

/** How often the state is still polled while the live stream is open (a safety net only). */
const LIVE_FALLBACK_POLL_MS = 15_000;

const STEPS = [
  { key: 'received', label: 'Received' },
  { key: 'validated', label: 'Validated' },
  { key: 'forwarding', label: 'Forwarding to PACS' },
  { key: 'delivered', label: 'Delivered to PACS' },
] as const;

/**
 * Where a `failed` upload stopped. `failed` comes after completion from two places: assembling
 * the files (validation never passed, so no `validated` entry in the timeline), or delivery
 * (every instance refused by the PACS, or the PACS not reached before the gateway gave up).
 */
export type FailedAt = 'assembly' | 'refused-by-pacs' | 'delivery';

export function failedAt(status: ServerUploadStatus | null): FailedAt | null {
  if (status?.state !== 'failed' || status.timeline.length === 0) return null;
  if (!status.timeline.some((entry) => ['validated', 'queued', 'forwarding'].includes(entry.state))) return 'assembly';
  const refused = status.instances.length > 0 && status.instances.every((instance) => instance.forward_status === 'refused');
  return refused ? 'refused-by-pacs' : 'delivery';
}

const FAILED_TEXT: Record<FailedAt, string> = {
  assembly: 'Not delivered: the gateway could not put the received files together',
  'refused-by-pacs': 'Not delivered: the PACS refused every image',
  delivery: 'Not delivered: sending to the PACS failed',
};

/** How many steps are done for a gateway state (side exits stop where they happened). */
function stepsDone(state: string, failed: FailedAt | null): number {
  switch (state) {
    case 'created':
    case 'receiving':
      return 0;
    case 'assembling':
    case 'rejected':
      return 1;
    case 'validated':
    case 'queued':
      return 2;
    case 'failed':
      // Received is certain (failed comes after completion); the rest only as the timeline says.
      return failed === 'refused-by-pacs' ? 3 : failed === 'delivery' ? 2 : 1;
    case 'forwarding':
    case 'partially_delivered':
      return 3;
    case 'delivered':
      return 4;
    default:
      return 0;
  }
}

const STATE_TEXT: Record<string, string> = {
  created: 'Waiting for the files',
  receiving: 'Receiving the files',
  assembling: 'Received — checking the DICOM files',
  validated: 'Validated — waiting to be forwarded',
  queued: 'Validated — queued for the PACS',
  forwarding: 'Forwarding to the PACS',
  delivered: 'Delivered to the PACS',
  rejected: 'Rejected: no valid DICOM in the upload',
  partially_delivered: 'Partly delivered: the PACS refused some images',
  failed: 'Not delivered',
  cancelled: 'Cancelled',
  expired: 'Expired before all files arrived',
};

const BAD_STATES = ['rejected', 'failed', 'partially_delivered', 'cancelled', 'expired'];

export function describeState(state: string): string {
  return STATE_TEXT[state] ?? state;
}

export interface UploadStatusResult {
  status: ServerUploadStatus | null;
  error: string | null;
  /** the gateway knows no such upload (or not for this account): asking again will not help */
  notFound: boolean;
}

export function useUploadStatus(serverId: string | undefined): UploadStatusResult {
  const network = useNetworkStatus();
  const [status, setStatus] = useState<ServerUploadStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notFound, setNotFound] = useState(false);
  const finished = notFound || (status !== null && TERMINAL.has(status.state));

  useEffect(() => {
    if (!serverId || finished || network === 'offline') return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let inFlight = false;
    let again = false;
    const poll = async (): Promise<void> => {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      clearTimeout(timer);
      try {
        const fresh = await getUploadStatus(serverId);
        if (stopped) return;
        setStatus(fresh);
        setError(null);
        if (TERMINAL.has(fresh.state)) return;
      } catch (caught) {
        const failure = toUserFacingError(caught);
        if (!stopped && failure.status === 404) {
          // Asking again will not help: polling stops here, and the effect ends with `notFound`.
          stopped = true;
          setNotFound(true);
        } else if (!stopped) {
          setError(failure.message);
        }
      } finally {
        inFlight = false;
      }
      if (stopped) return;
      if (again) {
        again = false;
        void poll();
        return;
      }
      // With the live stream open, a state change arrives as an event: poll only as a fallback.
      timer = setTimeout(() => void poll(), liveEvents.status === 'open' ? LIVE_FALLBACK_POLL_MS : env.statusPollMs);
    };
    void poll();
    const offLive = liveEvents.subscribe('upload_state', (data) => {
      if ((data as { upload_id?: unknown } | null)?.upload_id === serverId) void poll();
    });
    // Reconnected: whatever changed meanwhile is one request away.
    const offOpen = liveEvents.onOpen(() => void poll());
    return () => {
      stopped = true;
      clearTimeout(timer);
      offLive();
      offOpen();
    };
  }, [serverId, finished, network]);

  return { status, error, notFound };
}

/** What the gateway's answer (or the history saved on this device) says about the study. */
function LeftOut({ status }: { status: ServerUploadStatus }) {
  const headline = leftOutHeadline(status.state, status.files);
  if (!headline) return null;
  const items = leftOutFiles(status.files);
  const list = (
    <ul>
      {items.slice(0, 200).map((item, n) => (
        <li key={`${item.name}-${n}`}>
          <strong>{item.name}</strong>: {item.reason}
        </li>
      ))}
      {items.length > 200 ? <li>… and {items.length - 200} more</li> : null}
    </ul>
  );
  return (
    <div data-testid="left-out">
      {status.state === 'rejected' ? (
        <Alert>
          <p>
            <strong>{headline}.</strong>
          </p>
          <div className="left-out">{list}</div>
        </Alert>
      ) : (
        <Alert tone="warning">
          <p>
            <strong>{headline}.</strong> Send {items.length === 1 ? 'that image' : 'those images'} again if the
            radiologist needs {items.length === 1 ? 'it' : 'them'}.
          </p>
          <details className="left-out" open={items.length <= 10}>
            <summary>Which files, and why</summary>
            {list}
          </details>
        </Alert>
      )}
    </div>
  );
}

export interface ServerStatusViewProps extends UploadStatusResult {
  offline: boolean;
  /** the state this device last saw for the upload (its saved history), if any */
  lastKnownState?: string | null;
}

function headlineOf({ status, error, offline, lastKnownState }: ServerStatusViewProps): string {
  const failed = failedAt(status);
  if (failed) return FAILED_TEXT[failed];
  if (status) return describeState(status.state);
  const last = lastKnownState ? describeState(lastKnownState) : null;
  if (offline) return last ? `You are offline — last known: ${last}` : 'You are offline — the state shows when the network is back';
  if (error) return last ? `Last known: ${last}` : 'The state is not known yet';
  return 'Asking the gateway…';
}

/** The gateway's view, drawn: received → validated → forwarding → delivered, or why not. */
export function ServerStatusView(props: ServerStatusViewProps) {
  const { status, error, notFound, offline, lastKnownState } = props;
  if (notFound) {
    return (
      <div className="card" data-testid="server-status" data-state="not-found">
        <h2>At the reading centre</h2>
        <Alert>
          <p>
            <strong>No such upload.</strong> It may have been removed, or it was sent from another account.
          </p>
        </Alert>
      </div>
    );
  }
  // The live state, else (gateway out of reach) the last one this device saw; else nothing known.
  const state = status?.state ?? (offline || error ? (lastKnownState ?? null) : null);
  const done = state ? stepsDone(state, failedAt(status)) : 0;
  const bad = state !== null && BAD_STATES.includes(state);
  const live = status !== null && !offline;
  const refused = (status?.instances ?? []).filter((i) => i.forward_status === 'refused');

  return (
    <div className="card" data-testid="server-status" data-state={state ?? 'unknown'}>
      <h2>At the reading centre</h2>
      <p className={bad ? 'server-state server-state--bad' : 'server-state'} role="status" aria-live="polite" data-testid="server-state">
        {headlineOf(props)}
      </p>
      <ol className="stepper">
        {STEPS.map((step, index) => {
          const complete = index < done;
          // Only a live answer says what is happening now.
          const current = live && index === done && !bad && state !== 'delivered';
          return (
            <li key={step.key} className={complete ? 'stepper__step stepper__step--done' : current ? 'stepper__step stepper__step--current' : 'stepper__step'} aria-current={current ? 'step' : undefined}>
              <span className="stepper__dot" aria-hidden="true">
                {complete ? '✓' : index + 1}
              </span>
              {step.label}
              <span className="visually-hidden">{complete ? ' (done)' : current ? ' (in progress)' : ''}</span>
            </li>
          );
        })}
      </ol>
      {status && offline && !TERMINAL.has(status.state) ? <Alert tone="info">You are offline — this is the last known state.</Alert> : null}
      {error && !offline ? <Alert tone="warning">{error}</Alert> : null}
      {/* The gateway's reason, as it gives it: it never holds patient data. */}
      {status?.error ? (
        <Alert>
          {status.state === 'failed' ? 'Why: ' : null}
          {status.error}
        </Alert>
      ) : null}
      {status ? <LeftOut status={status} /> : null}
      {refused.length > 0 ? (
        <details className="left-out" open>
          <summary>{refused.length} images refused by the PACS</summary>
          <ul>
            {refused.slice(0, 200).map((i, n) => (
              <li key={i.sop_instance_uid ?? n}>
                {i.entry_name ?? i.sop_instance_uid}: {i.forward_reason ?? i.forward_status}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
      {status ? (
        <>
          <p className="muted">
            {formatBytes(status.bytes_received ?? 0)} received
            {typeof status.instance_count === 'number' ? ` · ${status.instance_count} images` : ''}
          </p>
          {status.timeline.length > 0 ? (
            <details className="timeline">
              <summary>Timeline</summary>
              <ol>
                {status.timeline.map((entry, n) => (
                  <li key={`${entry.state}-${n}`}>
                    <time dateTime={entry.at}>{formatDateTime(entry.at)}</time> — {describeState(entry.state)}
                    {entry.detail ? ` (${entry.detail})` : ''}
                  </li>
                ))}
              </ol>
            </details>
          ) : null}
        </>
      ) : null}
    </div>
  );
}

/** Which study this is: from the gateway's answer, else from the history saved on this device. */
export function studyShown(status: ServerUploadStatus | null, lastKnown: UploadSummary | null): StudySummaryProps | null {
  const study = status?.study;
  if (study) {
    return {
      patientName: study.patient_name,
      modality: study.modality,
      studyDate: study.study_date,
      serviceLevel: study.service_level,
      description: study.study_description ?? null,
      files: { count: status.files.length, bytes: status.bytes_total ?? 0 },
    };
  }
  if (!lastKnown) return null;
  return {
    patientName: lastKnown.patient_name,
    modality: lastKnown.modality,
    studyDate: lastKnown.study_date,
    serviceLevel: lastKnown.service_level,
    description: lastKnown.study_description,
    files: { count: lastKnown.file_count, bytes: lastKnown.bytes_total },
  };
}

/**
 * What the gateway knows, live. `lastKnown`: the upload as the history on this device saved it,
 * shown while the gateway cannot be asked. `withStudy`: also say which study it is (it was not
 * sent from this device, so the page knows nothing else about it).
 */
export function ServerStatus({ serverId, lastKnown = null, withStudy = false }: { serverId: string; lastKnown?: UploadSummary | null; withStudy?: boolean }) {
  const result = useUploadStatus(serverId);
  const offline = useNetworkStatus() === 'offline';
  const study = withStudy && !result.notFound ? studyShown(result.status, lastKnown) : null;
  return (
    <>
      {study ? <StudySummary {...study} /> : null}
      <ServerStatusView {...result} offline={offline} lastKnownState={lastKnown?.state ?? null} />
    </>
  );
}
