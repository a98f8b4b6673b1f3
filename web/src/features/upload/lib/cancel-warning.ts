/**
 * What the "Cancel this upload?" dialog may promise. A gateway that forwards while it receives
 * (RELAYPACS_FORWARD_WHILE_RECEIVING) has sent some instances to the PACS before the study is
 * complete, and a cancel does not take them back: the dialog must not say "nothing was sent" then.
 */
import type { InstanceOutcome } from '../engine/protocol';

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
