import { useState, type SyntheticEvent } from 'react';
import { useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { formatDateTime } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';

import { listUsers, ROLES, updateUser, type AdminUser, type Role, type UserQuery } from '../api/admin';
import { useLoad } from '../hooks/use-load';
import { formText } from '../lib/form';
import { offsetOfPage, previousOffset } from '../lib/paging';

import { useViewerId } from './admin-area';
import { CreateUserDialog } from './create-user-dialog';
import { Pager } from './pager';
import { TableRegion } from './table-region';

const LIMIT = 25;

type Pending = { kind: 'role'; user: AdminUser; role: Role } | { kind: 'disable'; user: AdminUser };
type Message = { tone: 'success' | 'error'; text: string };

function isRole(value: string | null): value is Role {
  return value !== null && (ROLES as readonly string[]).includes(value);
}

export function UsersPage() {
  useDocumentTitle('Users');
  const viewerId = useViewerId();
  const [params, setParams] = useSearchParams();
  const q = params.get('q') ?? '';
  const role = params.get('role');
  const status = params.get('status');
  const offset = offsetOfPage(params.get('page'), LIMIT);
  const query: UserQuery = {
    q: q.trim() || undefined,
    role: isRole(role) ? role : undefined,
    is_active: status === 'active' ? true : status === 'disabled' ? false : undefined,
    limit: LIMIT,
    offset,
  };
  const users = useLoad(() => listUsers(query), JSON.stringify(query));
  const [pending, setPending] = useState<Pending | null>(null);
  const [message, setMessage] = useState<Message | null>(null);
  const [busy, setBusy] = useState(false);
  const [creating, setCreating] = useState(false);

  function search(event: SyntheticEvent<HTMLFormElement>): void {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next: Record<string, string> = {};
    for (const key of ['q', 'role', 'status']) {
      const value = formText(form, key).trim();
      if (value) next[key] = value;
    }
    setParams(next);
  }

  function goTo(newOffset: number): void {
    const next = new URLSearchParams(params);
    const page = Math.floor(newOffset / LIMIT) + 1;
    if (page > 1) next.set('page', String(page));
    else next.delete('page');
    setParams(next);
  }

  async function apply(change: { role?: Role; is_active?: boolean }, user: AdminUser): Promise<void> {
    setBusy(true);
    try {
      const updated = await updateUser(user.id, change);
      if (change.role) setMessage({ tone: 'success', text: `${updated.username} is now ${updated.role === 'admin' ? 'an' : 'a'} ${updated.role}.` });
      else if (updated.is_active) setMessage({ tone: 'success', text: `${updated.username} can sign in again.` });
      else setMessage({ tone: 'success', text: `${updated.username} is disabled and signed out everywhere.` });
      users.reload();
    } catch (error) {
      setMessage({ tone: 'error', text: `${user.username}: ${toUserFacingError(error).message}` });
    } finally {
      setBusy(false);
      setPending(null);
    }
  }

  const page = users.data;
  return (
    <section aria-labelledby="users-title">
      <div className="admin-heading">
        <h1 id="users-title">Users</h1>
        <button type="button" className="button button--primary" onClick={() => setCreating(true)}>
          New user
        </button>
      </div>
      <form className="admin-filters card" role="search" aria-label="Find users" onSubmit={search} key={params.toString()}>
        <div className="field">
          <label htmlFor="users-q">Name or email</label>
          <input id="users-q" name="q" type="search" defaultValue={q} maxLength={100} autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="users-role">Role</label>
          <select id="users-role" name="role" defaultValue={isRole(role) ? role : ''}>
            <option value="">Any role</option>
            {ROLES.map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="users-status">Status</label>
          <select id="users-status" name="status" defaultValue={status === 'active' || status === 'disabled' ? status : ''}>
            <option value="">Any status</option>
            <option value="active">Active</option>
            <option value="disabled">Disabled</option>
          </select>
        </div>
        <div className="admin-filters__actions">
          <button type="submit" className="button button--primary">
            Search
          </button>
        </div>
      </form>
      <div aria-live="polite">{message ? <Alert tone={message.tone === 'success' ? 'success' : 'error'}>{message.text}</Alert> : null}</div>
      {users.error ? <Alert>{users.error.message}</Alert> : null}
      {page === null && users.loading ? <p role="status">Loading users…</p> : null}
      {page ? (
        <>
          <TableRegion
            testId="users-table"
            caption={
              <>
                Accounts{q ? ` matching “${q}”` : ''} ({page.total}){users.loading ? <span className="muted"> · updating…</span> : null}
              </>
            }
          >
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Status</th>
                <th scope="col">2FA</th>
                <th scope="col">Last sign-in</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {page.items.length === 0 ? (
                <tr>
                  <td colSpan={7}>No account matches.</td>
                </tr>
              ) : null}
              {page.items.map((user) => {
                const self = user.id === viewerId;
                return (
                  <tr key={user.id} data-username={user.username}>
                    <th scope="row" className="admin-nowrap">
                      {user.username}
                      {self ? <span className="muted"> (you)</span> : null}
                      {user.full_name ? (
                        <span className="admin-full-name" data-testid="full-name">
                          {user.full_name}
                        </span>
                      ) : null}
                    </th>
                    <td className="admin-nowrap">{user.email}</td>
                    <td data-testid="role">{user.role}</td>
                    <td>
                      <span className={`badge ${user.is_active ? 'badge--delivered' : 'badge--failed'}`} data-testid="status">
                        {user.is_active ? 'Active' : 'Disabled'}
                      </span>
                    </td>
                    <td>{user.totp_enabled ? 'On' : 'Off'}</td>
                    <td className="admin-nowrap">{formatDateTime(user.last_login_at)}</td>
                    <td>
                      <div className="admin-row-actions">
                        <button
                          type="button"
                          className="button admin-small"
                          disabled={busy || self}
                          title={self ? 'You cannot change your own role' : undefined}
                          onClick={() => setPending({ kind: 'role', user, role: user.role })}
                        >
                          Change role<span className="visually-hidden"> of {user.username}</span>
                        </button>
                        {user.is_active ? (
                          <button
                            type="button"
                            className="button admin-small button--danger"
                            disabled={busy || self}
                            title={self ? 'You cannot disable your own account' : undefined}
                            onClick={() => setPending({ kind: 'disable', user })}
                          >
                            Disable<span className="visually-hidden"> {user.username}</span>
                          </button>
                        ) : (
                          <button
                            type="button"
                            className="button admin-small"
                            disabled={busy}
                            onClick={() => void apply({ is_active: true }, user)}
                          >
                            Enable<span className="visually-hidden"> {user.username}</span>
                          </button>
                        )}
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </TableRegion>
          <Pager
            label="Pages of users"
            offset={offset}
            shown={page.items.length}
            total={page.total}
            onPrevious={() => goTo(previousOffset(offset, LIMIT))}
            onNext={() => goTo(offset + LIMIT)}
          />
        </>
      ) : null}

      <Dialog
        open={pending?.kind === 'role'}
        title={pending ? `Change the role of ${pending.user.username}` : 'Change role'}
        onClose={() => setPending(null)}
        actions={
          <>
            <button
              type="button"
              className="button button--primary"
              disabled={busy || pending?.kind !== 'role' || pending.role === pending.user.role}
              onClick={() => {
                if (pending?.kind === 'role') void apply({ role: pending.role }, pending.user);
              }}
            >
              Change role
            </button>
            <button type="button" className="button" onClick={() => setPending(null)}>
              Cancel
            </button>
          </>
        }
      >
        {pending?.kind === 'role' ? (
          <>
            <p>
              {pending.user.username} is {pending.user.role === 'admin' ? 'an' : 'a'} {pending.user.role}. The new role applies to
              their next request.
            </p>
            <div className="field">
              <label htmlFor="new-role">New role</label>
              <select
                id="new-role"
                value={pending.role}
                onChange={(event) => {
                  const value = event.target.value;
                  if (isRole(value)) setPending({ ...pending, role: value });
                }}
              >
                {ROLES.map((value) => (
                  <option key={value} value={value}>
                    {value}
                  </option>
                ))}
              </select>
            </div>
            {pending.role === 'admin' && pending.user.role !== 'admin' ? (
              <Alert tone="warning">Administrators can change every account and read the audit log.</Alert>
            ) : null}
          </>
        ) : null}
      </Dialog>

      <Dialog
        open={pending?.kind === 'disable'}
        title={pending ? `Disable ${pending.user.username}?` : 'Disable account?'}
        onClose={() => setPending(null)}
        actions={
          <>
            <button
              type="button"
              className="button button--danger"
              disabled={busy}
              onClick={() => {
                if (pending?.kind === 'disable') void apply({ is_active: false }, pending.user);
              }}
            >
              Disable account
            </button>
            <button type="button" className="button" onClick={() => setPending(null)}>
              Cancel
            </button>
          </>
        }
      >
        <p>
          They are signed out on every device at once and cannot sign in until an administrator enables the account again. Their
          uploads and reports are kept.
        </p>
      </Dialog>

      <CreateUserDialog
        open={creating}
        onClose={() => setCreating(false)}
        onCreated={(user) => {
          setCreating(false);
          setMessage({ tone: 'success', text: `Created ${user.username} (${user.role}).` });
          users.reload();
        }}
      />
    </section>
  );
}
