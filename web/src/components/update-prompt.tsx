import { useRegisterSW } from 'virtual:pwa-register/react';

/** Offers the new version when a deploy lands; never reloads under a user's feet. */
export function UpdatePrompt() {
  const {
    needRefresh: [needRefresh, setNeedRefresh],
    updateServiceWorker,
  } = useRegisterSW({
    onRegisteredSW(_url, registration) {
      if (!registration) return;
      // Look for a new version hourly: the app may stay open all shift.
      setInterval(() => void registration.update(), 60 * 60 * 1000);
    },
  });

  if (!needRefresh) return null;
  return (
    <div className="toast" role="alert">
      <p>A new version of RelayPACS is ready. Uploads in progress continue after the update.</p>
      <div className="toast__actions">
        <button type="button" className="button" onClick={() => void updateServiceWorker(true)}>
          Update now
        </button>
        <button type="button" className="button button--ghost" onClick={() => setNeedRefresh(false)}>
          Later
        </button>
      </div>
    </div>
  );
}
