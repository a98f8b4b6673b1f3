/**
 * What the signed-in user leaves on this device (queued studies, upload history, cached reports
 * and notifications) and the rule that keeps one user's from the next on a shared device.
 */
import { clearNotificationCache } from '@/features/notifications';
import { clearReportCache } from '@/features/reports';
import { clearDeviceData } from '@/features/upload';
import { deviceOwner, recordDeviceOwner } from '@/lib/tokens';

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
