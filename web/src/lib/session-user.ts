/**
 * Whose session an access token belongs to: its `sub` claim, read without checking the signature.
 * That is only for telling one user's session from another's on this device (a refresh keeps the
 * user, a sign-in by someone else does not); the gateway checks every token it is sent.
 *
 * null when there is no token or it is not a JWT with a subject.
 */
export function userOfToken(access: string | null | undefined): string | null {
  const payload = access?.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='))) as { sub?: unknown };
    return typeof claims.sub === 'string' && claims.sub !== '' ? claims.sub : null;
  } catch {
    return null;
  }
}
