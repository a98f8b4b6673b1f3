import { useEffect, useState } from 'react';

import { Alert } from '@/components/alert';
import { env } from '@/config/env';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatBytes, formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { toUserFacingError } from '@/lib/problem';

import { getUploadStatus } from '../api/uploads';
import { TERMINAL, type ServerUploadStatus } from '../engine/protocol';

/** How often the state is still polled while the live stream is open (a safety net only). */
const LIVE_FALLBACK_POLL_MS = 15_000;

const STEPS = [
  { key: 'received', label: 'Received' },
  { key: 'validated', label: 'Validated' },
  { key: 'forwarding', label: 'Forwarding to PACS' },
  { key: 'delivered', label: 'Delivered to PACS' },
] as const;

/** How many steps are done for a gateway state (side exits stop where they happened). */
function stepsDone(state: string): number {
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
    case 'forwarding':
    case 'failed':
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
  failed: 'Not delivered: the PACS could not be reached after many tries',
  cancelled: 'Cancelled',
  expired: 'Expired before all files arrived',
};

export function describeState(state: string): string {
  return STATE_TEXT[state] ?? state;
}

export function useUploadStatus(serverId: string | undefined): { status: ServerUploadStatus | null; error: string | null } {
  const network = useNetworkStatus();
  const [status, setStatus] = useState<ServerUploadStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const finished = status !== null && TERMINAL.has(status.state);

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
        if (!stopped) setError(toUserFacingError(caught).message);
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

  return { status, error };
}

/** What the gateway knows, live: received → validated → forwarding → delivered, or why not. */
export function ServerStatus({ serverId }: { serverId: string }) {
  const { status, error } = useUploadStatus(serverId);
  const state = status?.state ?? 'receiving';
  const done = stepsDone(state);
  const bad = ['rejected', 'failed', 'partially_delivered', 'cancelled', 'expired'].includes(state);
  const refused = (status?.instances ?? []).filter((i) => i.forward_status === 'refused');
  const problems = (status?.files ?? []).flatMap((file) => {
    const list = (file as { problems?: { entry: string | null; reason: string }[] }).problems ?? [];
    return list.map((p) => `${file.name ?? 'file'}${p.entry ? ` / ${p.entry}` : ''}: ${p.reason}`);
  });

  return (
    <div className="card" data-testid="server-status" data-state={state}>
      <h2>At the reading centre</h2>
      <p className={bad ? 'server-state server-state--bad' : 'server-state'} role="status" aria-live="polite" data-testid="server-state">
        {status ? describeState(state) : 'Asking the gateway…'}
      </p>
      <ol className="stepper">
        {STEPS.map((step, index) => {
          const complete = index < done;
          const current = index === done && !bad && state !== 'delivered';
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
      {error ? <Alert tone="warning">{error}</Alert> : null}
      {status?.error ? <Alert>{status.error}</Alert> : null}
      {problems.length > 0 ? (
        <details className="left-out">
          <summary>{problems.length} files were not DICOM and were left out by the gateway</summary>
          <ul>
            {problems.slice(0, 200).map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </details>
      ) : null}
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
