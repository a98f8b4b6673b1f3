/**
 * What the "Cancel this upload?" dialog may promise. A gateway that forwards while it receives
 * (RELAYPACS_FORWARD_WHILE_RECEIVING) has sent some instances to the PACS before the study is
 * complete, and a cancel does not take them back: the dialog must not say "nothing was sent" then.
 */
import type { InstanceOutcome } from '../engine/protocol';
import type { JobProgress } from '../engine/types';

/** What the device knows of the instances the gateway already stored in the PACS. */
export type PacsCheck =
  /** the gateway has not been asked yet (the dialog just opened) */
  | { kind: 'checking' }
  /** the gateway's answer: this many instances are stored in the PACS */
  | { kind: 'known'; stored: number }
  /** the gateway could not be asked (offline, or it did not answer) */
  | { kind: 'unknown' };

export const NOTHING_SENT =
  'The study will not reach the reading centre and its copy on this device is deleted.';

/** Says nothing either way about the PACS: true whatever the gateway did, and not alarming. */
export const UNCONFIRMED = 'Sending stops and the copy of this study on this device is deleted.';

export function storedInstanceCount(instances: readonly InstanceOutcome[]): number {
  return instances.filter((instance) => instance.forward_status === 'stored').length;
}

/**
 * The dialog's text. `started`: the gateway has an upload session for the job (before that no
 * byte of the study left the device, so nothing can be in the PACS).
 */
export function cancelWarning(started: boolean, check: PacsCheck): string {
  if (!started) return NOTHING_SENT;
  if (check.kind !== 'known') return UNCONFIRMED;
  if (check.stored <= 0) return NOTHING_SENT;
  const some = check.stored === 1 ? '1 instance of this study is' : `${check.stored} instances of this study are`;
  return `${some} already in the PACS and will stay there. The rest will not be sent, and the copy on this device is deleted.`;
}

/**
 * What a job the user cancelled says until the gateway confirms: it is not cancelled yet, and
 * whether the study still reaches the PACS is the gateway's answer, not this device's.
 */
export function cancellingNotice(progress: Pick<JobProgress, 'waitingFor' | 'retrying'> | null, offline: boolean): string {
  const kept = 'Until the gateway confirms it, the upload is not cancelled and the study stays on this device.';
  if (offline || progress?.waitingFor === 'network') {
    return `You are offline. The cancel will be sent to the gateway when the connection is back. ${kept}`;
  }
  if (progress?.retrying) {
    return `The gateway cannot be reached. The cancel will be sent when the connection is back. ${kept}`;
  }
  if (progress?.waitingFor === 'sign-in') return `The cancel will be sent once your sign-in is renewed. ${kept}`;
  return 'Cancelling — waiting for the gateway to confirm.';
}
