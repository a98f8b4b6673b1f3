import { NavLink, Outlet } from 'react-router';

import { InstallButton } from '@/components/install-button';
import { NetworkStatusBadge } from '@/components/network-status';
import { UpdatePrompt } from '@/components/update-prompt';
import { useAuth } from '@/features/auth';
import { LiveNotifications, UnreadBadge } from '@/features/notifications';

export function Layout({ signedIn }: { signedIn: boolean }) {
  const { user } = useAuth();
  return (
    <>
      {signedIn ? <LiveNotifications role={user?.role ?? null} /> : null}
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="header">
        <div className="header__inner">
          <NavLink to={signedIn ? '/upload' : '/sign-in'} className="brand">
            <img src="/favicon.svg" alt="" width={28} height={28} />
            RelayPACS
          </NavLink>
          <NetworkStatusBadge />
          <InstallButton />
        </div>
        {signedIn ? (
          <nav className="nav" aria-label="Main">
            <NavLink to="/upload">New upload</NavLink>
            <NavLink to="/uploads">Uploads</NavLink>
            <NavLink to="/dashboard">Dashboard</NavLink>
            <NavLink to="/reports">Reports</NavLink>
            <NavLink to="/notifications">
              Notifications
              <UnreadBadge />
            </NavLink>
            <NavLink to="/settings">Settings</NavLink>
            {user?.role === 'admin' ? <NavLink to="/admin">Admin</NavLink> : null}
          </nav>
        ) : null}
      </header>
      <main id="main" className="main" tabIndex={-1}>
        <Outlet />
      </main>
      <UpdatePrompt />
    </>
  );
}
