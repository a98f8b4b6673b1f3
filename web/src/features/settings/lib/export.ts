/** relaypacs_my_data_<username>_<YYYY-MM-DD>.json, with only characters every file system accepts. */
export function exportFilename(username: string, when: Date): string {
  const safe = username.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_') || 'user';
  return `relaypacs_my_data_${safe}_${when.toISOString().slice(0, 10)}.json`;
}

/** A trimmed, plausibly valid email address (the gateway has the last word), or an error text. */
export function checkEmail(value: string, current: string): string | null {
  const email = value.trim();
  if (!email) return 'Enter an email address.';
  if (email.length > 254 || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) return 'Enter an email address like name@hospital.org.';
  if (email.toLowerCase() === current.toLowerCase()) return 'This is already your email address.';
  return null;
}
