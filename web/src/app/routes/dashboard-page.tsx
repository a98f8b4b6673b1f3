import { lazy, Suspense } from 'react';

import { useAuth } from '@/features/auth';

// Recharts is the largest dependency: the dashboard's code loads when the dashboard opens (the
// service worker precaches the chunk, so it opens offline too).
const DashboardPage = lazy(() => import('@/features/dashboard').then((m) => ({ default: m.DashboardPage })));

/** The dashboard, with the admin's filters and CSV export when the user is an admin. */
export function DashboardRoute() {
  const { user } = useAuth();
  return (
    <Suspense fallback={<p role="status">Loading the dashboard…</p>}>
      <DashboardPage key={user?.id ?? 'unknown'} viewer={user?.id ?? ''} isAdmin={user?.role === 'admin'} />
    </Suspense>
  );
}
