import { useNetworkStatus } from '@/hooks/use-network-status';

const LABELS = {
  online: 'Online',
  offline: 'Offline',
  reconnecting: 'Reconnecting…',
} as const;

/** Always visible in the header; a polite live region so the change is announced. */
export function NetworkStatusBadge() {
  const status = useNetworkStatus();
  return (
    <p className={`network network--${status}`} role="status" aria-live="polite" data-testid="network-status">
      <span className="network__dot" aria-hidden="true" />
      {LABELS[status]}
    </p>
  );
}
