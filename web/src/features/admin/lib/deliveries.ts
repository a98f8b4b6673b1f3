/** Which uploads the deliveries screen lists, and what it says about each. */
import type { Delivery, DeliveryTrace } from '../api/admin';

export const WAITING_STATES = ['validated', 'queued', 'forwarding'] as const;

export const VIEWS = {
  attention: { label: 'Failed or waiting', states: ['failed', ...WAITING_STATES] },
  failed: { label: 'Failed', states: ['failed'] },
  waiting: { label: 'Waiting for the PACS', states: [...WAITING_STATES] },
  partial: { label: 'Partly delivered', states: ['partially_delivered'] },
  rejected: { label: 'Rejected', states: ['rejected'] },
  all: { label: 'Any state', states: [] },
} as const satisfies Record<string, { label: string; states: readonly string[] }>;

export type View = keyof typeof VIEWS;

export function isView(value: string | null): value is View {
  return value !== null && Object.hasOwn(VIEWS, value);
}

const STATE_LABELS: Record<string, string> = {
  created: 'Created',
  receiving: 'Receiving',
  assembling: 'Checking',
  validated: 'Validated',
  queued: 'Queued',
  forwarding: 'Forwarding',
  delivered: 'Delivered',
  rejected: 'Rejected',
  partially_delivered: 'Partly delivered',
  failed: 'Failed',
  cancelled: 'Cancelled',
  expired: 'Expired',
};

export function stateLabel(state: string): string {
  return STATE_LABELS[state] ?? state;
}

/** Only a failed delivery can be run again (the API refuses the others with a 409). */
export function canRequeue(delivery: Pick<Delivery, 'state'>): boolean {
  return delivery.state === 'failed';
}

/**
 * The reason to show in the list. The API keeps an upload's last failure reason after a requeue
 * (and after the delivery that followed), so it is shown as the reason only while the upload is
 * failed, rejected or partly delivered, and as an earlier failure otherwise.
 */
export function listReason(delivery: Pick<Delivery, 'state' | 'failure_reason'>): string {
  const earlier = delivery.failure_reason;
  switch (delivery.state) {
    case 'failed':
    case 'rejected':
    case 'partially_delivered':
      return earlier ?? 'No reason recorded.';
    case 'validated':
    case 'queued': {
      const waiting = 'Waiting for its turn or for the PACS (the details show the last attempt).';
      return earlier ? `${waiting} Earlier failure: ${earlier}` : waiting;
    }
    case 'forwarding':
      return earlier ? `Being sent to the PACS now. Earlier failure: ${earlier}` : 'Being sent to the PACS now.';
    case 'delivered':
      return earlier ? `Delivered after an earlier failure: ${earlier}` : '—';
    default:
      return earlier ?? '—';
  }
}

/**
 * What the details of one upload add: the latest timeline note (e.g. "the PACS is unreachable:
 * …; next attempt in 30 s") and each distinct answer the PACS gave for instances it did not store.
 */
export function traceReasons(trace: DeliveryTrace): { lastNote: string | null; lastNoteAt: string | null; pacsReasons: string[] } {
  const noted = [...trace.timeline].reverse().find((event) => event.detail);
  const reasons = new Set<string>();
  for (const instance of trace.instances) {
    if (instance.forward_status !== 'stored' && instance.forward_reason) reasons.add(instance.forward_reason);
  }
  return { lastNote: noted?.detail ?? null, lastNoteAt: noted?.at ?? null, pacsReasons: [...reasons].sort() };
}
