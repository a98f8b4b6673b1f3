/**
 * What the signed-in user leaves on this device (queued studies, upload history, cached reports
 * and notifications) and the rule that keeps one user's from the next on a shared device.
 */
import { clearNotificationCache } from '@/features/notifications';
import { clearReportCache } from '@/features/reports';
import { clearDeviceData, stopUploadEngine } from '@/features/upload';
import { deviceOwner, recordDeviceOwner, tokens } from '@/lib/tokens';

/** Everything of the signed-in user kept on this device: queued studies, history, reports. */
export async function clearAllDeviceData(): Promise<void> {
  await Promise.all([clearDeviceData(), clearReportCache(), clearNotificationCache()]);
}

/**
 * Runs at every sign-in, before the user's session starts. The device keeps what it holds only
 * for the user it is recorded as held for: data of another user, or of no one known, is deleted
 * before this user can see or send it. The owner is written after the deletion, so a browser
 * killed in between leaves the old owner on record and the next sign-in deletes again.
 */
export async function handOverDevice(user: { id: string }): Promise<void> {
  if ((await deviceOwner()) !== user.id) await clearAllDeviceData();
  await recordDeviceOwner(user.id);
}

/**
 * The same rule across tabs. A sign-in (or a sign-out) in another tab is this tab's session too,
 * through the shared localStorage, but this tab's memory is still the previous user's: their
 * upload engine with their queue, their screens and cached pages. So when another tab replaces
 * the session this tab holds, the engine is stopped before the next user's token can reach it and
 * the tab reloads into the session as it now is. Its data on the device is left alone: the other
 * tab's hand-over (or sign-out) has decided about it. Returns the function that stops watching.
 */
export function leaveWhenSessionReplacedElsewhere(reload: () => void = () => window.location.reload()): () => void {
  return tokens.onReplacedElsewhere(() => {
    stopUploadEngine();
    reload();
  });
}
