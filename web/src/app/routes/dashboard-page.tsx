import { lazy, Suspense } from 'react';

import { useAuth } from '@/features/auth';

// Recharts is the largest dependency: the dashboard's code loads when the dashboard opens (the
// service worker precaches the chunk, so it opens offline too).
const DashboardPage = lazy(() => import('@/features/dashboard').then((m) => ({ default: m.DashboardPage })));

/** The dashboard, with the admin's filters and CSV export when the user is an admin. */
export function DashboardRoute() {
  const { user } = useAuth();
  const loading = <p role="status">Loading the dashboard…</p>;
  // Figures are kept per viewer: asked for before the user is known, they would be kept under
  // no one's name (for whoever opens the dashboard next on this tab) and spend the rate-limited
  // reads twice.
  if (!user) return loading;
  return (
    <Suspense fallback={loading}>
      <DashboardPage key={user.id} viewer={user.id} isAdmin={user.role === 'admin'} />
    </Suspense>
  );
}
