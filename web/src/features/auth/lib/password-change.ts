/** When the app must ask for a new password before anything else. */

/**
 * Signed in with a one-time password (the profile says so), or the gateway refused a request
 * with `password_change_required` (the profile kept on the device may be older than that rule).
 */
export function mustChoosePassword(
  signedIn: boolean,
  user: { must_change_password: boolean } | null,
  refusedForPassword: boolean,
): boolean {
  return signedIn && (user?.must_change_password === true || refusedForPassword);
}
