import { useEffect } from 'react';
import { createBrowserRouter, Navigate, Outlet, RouterProvider, useLocation } from 'react-router';

import { AdminArea, AuditPage, DeliveriesPage, UsersPage } from '@/features/admin';
import { AuthProvider, ChoosePasswordPage, RegisterPage, SignInPage, useAuth } from '@/features/auth';
import { NotificationsPage } from '@/features/notifications';
import { ReportDetailPage, ReportsPage } from '@/features/reports';
import { NewUploadPage, startUploadEngine, UploadDetailPage, UploadsPage } from '@/features/upload';
import { network } from '@/lib/network';

import { clearAllDeviceData, handOverDevice, leaveWhenSessionReplacedElsewhere } from './device-data';
import { Layout } from './layout';
import { DashboardRoute } from './routes/dashboard-page';
import { NotFoundPage } from './routes/not-found-page';
import { SettingsPage } from './routes/settings-page';

function Shell() {
  const { signedIn, mustChangePassword } = useAuth();
  // Until a one-time password is replaced the gateway answers nothing else: no menu, no live news.
  return <Layout signedIn={signedIn && !mustChangePassword} />;
}

function RequireSignIn() {
  const { signedIn, signedOutOnPurpose, mustChangePassword } = useAuth();
  const location = useLocation();
  // Queued uploads resume by themselves after a reload, whatever screen the app opens on.
  useEffect(() => {
    if (signedIn && !mustChangePassword) startUploadEngine();
  }, [signedIn, mustChangePassword]);
  // An expired session comes back to where it was; a deliberate sign-out starts afresh.
  if (!signedIn) return <Navigate to="/sign-in" replace state={signedOutOnPurpose ? null : { from: location.pathname }} />;
  // Whatever the address, the new password comes first; then the page asked for opens.
  if (mustChangePassword) return <ChoosePasswordPage />;
  return <Outlet />;
}

function ReportDetailRoute() {
  const { user } = useAuth();
  return <ReportDetailPage canEdit={user?.role === 'radiologist' || user?.role === 'admin'} />;
}

function NotificationsRoute() {
  const { user } = useAuth();
  return <NotificationsPage userId={user?.id ?? null} />;
}

/** Admin screens: administrators only; anyone else gets a clear "not allowed". */
function AdminRoute() {
  const { user } = useAuth();
  return <AdminArea viewer={user ? { id: user.id, role: user.role } : null} />;
}

function PublicOnly() {
  const { signedIn } = useAuth();
  const location = useLocation();
  const from = (location.state as { from?: string } | null)?.from ?? '/upload';
  return signedIn ? <Navigate to={from} replace /> : <Outlet />;
}

const router = createBrowserRouter([
  {
    element: <Shell />,
    children: [
      {
        element: <PublicOnly />,
        children: [
          { path: '/sign-in', element: <SignInPage /> },
          { path: '/register', element: <RegisterPage /> },
        ],
      },
      {
        element: <RequireSignIn />,
        children: [
          { index: true, element: <Navigate to="/upload" replace /> },
          { path: '/upload', element: <NewUploadPage /> },
          { path: '/uploads', element: <UploadsPage /> },
          { path: '/uploads/:id', element: <UploadDetailPage /> },
          {
            path: '/admin',
            element: <AdminRoute />,
            children: [
              { index: true, element: <Navigate to="/admin/users" replace /> },
              { path: 'users', element: <UsersPage /> },
              { path: 'deliveries', element: <DeliveriesPage /> },
              { path: 'audit', element: <AuditPage /> },
            ],
          },
          { path: '/dashboard', element: <DashboardRoute /> },
          { path: '/settings', element: <SettingsPage /> },
          { path: '/account', element: <Navigate to="/settings" replace /> },
          { path: '/reports', element: <ReportsPage /> },
          { path: '/reports/:id', element: <ReportDetailRoute /> },
          { path: '/notifications', element: <NotificationsRoute /> },
        ],
      },
      { path: '*', element: <NotFoundPage /> },
    ],
  },
]);

export function App() {
  useEffect(() => network.start(), []);
  // Nor may a tab still holding the previous user's queue carry on under the next user's sign-in.
  useEffect(() => leaveWhenSessionReplacedElsewhere(), []);

  // Another person signing in on this device must not inherit the previous user's queue.
  return (
    <AuthProvider beforeSignIn={handOverDevice} beforeSignOut={clearAllDeviceData}>
      <RouterProvider router={router} />
    </AuthProvider>
  );
}
