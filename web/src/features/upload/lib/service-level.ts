import type { ServiceLevel } from '../engine/types';

/**
 * The service level a study is sent with: the one the clinician chose, whenever they chose it;
 * else their default (the preferences, which may arrive late on a slow network); else routine.
 * Derived rather than stored, so a late default can never replace a choice (a STAT study sent
 * as routine).
 */
export function serviceLevelOf(chosen: ServiceLevel | null, preferred: ServiceLevel | undefined): ServiceLevel {
  return chosen ?? preferred ?? 'routine';
}
