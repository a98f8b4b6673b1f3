import { NavLink, Outlet, useOutletContext } from 'react-router';

import { NotAllowed } from './not-allowed';

export interface AdminViewer {
  id: string;
  role: string;
}

interface AdminContext {
  viewerId: string;
}

/**
 * The admin screens' frame: administrators get the section tabs and the screen, anyone else a
 * clear refusal (the gateway refuses their requests too; this only saves them the error).
 */
export function AdminArea({ viewer }: { viewer: AdminViewer | null }) {
  if (!viewer) return <p role="status">Loading your account…</p>;
  if (viewer.role !== 'admin') return <NotAllowed role={viewer.role} />;
  return (
    <div className="admin">
      <nav className="admin-subnav" aria-label="Administration">
        <NavLink to="/admin/users">Users</NavLink>
        <NavLink to="/admin/deliveries">Deliveries</NavLink>
        <NavLink to="/admin/audit">Audit log</NavLink>
      </nav>
      <Outlet context={{ viewerId: viewer.id } satisfies AdminContext} />
    </div>
  );
}

export function useViewerId(): string {
  return useOutletContext<AdminContext>().viewerId;
}
