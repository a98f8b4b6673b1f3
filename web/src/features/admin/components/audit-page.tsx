import { useState, type SyntheticEvent } from 'react';
import { Link, useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { formatDateTime } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';

import { exportAuditEvents, listAuditEvents, listUsers, type AdminUser, type AuditCriteria, type AuditEvent } from '../api/admin';
import { useLoad } from '../hooks/use-load';
import { criteriaFor, describeDetails, formFromParams, formToParams, isUuid, KNOWN_ACTIONS, pickUser, type AuditForm } from '../lib/audit';
import { saveBlob } from '../lib/download';
import { formText } from '../lib/form';
import { offsetOfPage, previousOffset } from '../lib/paging';

import { Pager } from './pager';
import { TableRegion } from './table-region';

const LIMIT = 25;

/** The accounts, for names in the table and for resolving the user filter (one request). */
async function loadPeople(): Promise<AdminUser[]> {
  return (await listUsers({ limit: 500, offset: 0 })).items;
}

async function resolveUser(typed: string, people: readonly AdminUser[]): Promise<string | null> {
  const wanted = typed.trim();
  if (!wanted) return null;
  const known = pickUser(wanted, people);
  if (known || isUuid(wanted)) return known;
  // More accounts than one page holds: ask for this name.
  return pickUser(wanted, (await listUsers({ q: wanted, limit: 50, offset: 0 })).items);
}

async function criteriaOf(form: AuditForm, people: readonly AdminUser[]): Promise<AuditCriteria> {
  const result = criteriaFor(form, await resolveUser(form.user, people));
  if ('error' in result) throw new Error(result.error);
  return result.criteria;
}

export function AuditPage() {
  useDocumentTitle('Audit log');
  const [params, setParams] = useSearchParams();
  const form = formFromParams(params);
  const offset = offsetOfPage(params.get('page'), LIMIT);
  const people = useLoad(loadPeople, 'people');
  const peopleList = people.data ?? [];
  // A user filter typed before the accounts arrive is resolved by asking for that name.
  const events = useLoad(async () => listAuditEvents(await criteriaOf(form, peopleList), LIMIT, offset), params.toString());
  const [exporting, setExporting] = useState(false);
  const [message, setMessage] = useState<{ tone: 'success' | 'error'; text: string } | null>(null);
  const names = new Map(peopleList.map((user) => [user.id, user.username]));

  function apply(event: SyntheticEvent<HTMLFormElement>): void {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    const next: AuditForm = {
      user: formText(data, 'user'),
      userIs: data.get('user_is') === 'target' ? 'target' : 'actor',
      action: formText(data, 'action'),
      from: formText(data, 'from'),
      to: formText(data, 'to'),
    };
    setMessage(null);
    setParams(formToParams(next, 1));
  }

  function goTo(newOffset: number): void {
    setParams(formToParams(form, Math.floor(newOffset / LIMIT) + 1));
  }

  async function exportCsv(): Promise<void> {
    setExporting(true);
    setMessage(null);
    try {
      const { blob, filename } = await exportAuditEvents(await criteriaOf(form, peopleList));
      saveBlob(blob, filename);
      setMessage({ tone: 'success', text: `Downloaded ${filename}: every event matching the filters, oldest first.` });
    } catch (error) {
      setMessage({ tone: 'error', text: `Could not export: ${toUserFacingError(error).message}` });
    } finally {
      setExporting(false);
    }
  }

  function who(id: string | null): string {
    if (!id) return 'system';
    return names.get(id) ?? `${id.slice(0, 8)}…`;
  }

  function target(event: AuditEvent): string {
    if (!event.target_type) return '—';
    if (!event.target_id) return event.target_type;
    const name = event.target_type === 'user' ? names.get(event.target_id) : undefined;
    return `${event.target_type} ${name ?? `${event.target_id.slice(0, 8)}…`}`;
  }

  const page = events.data;
  const filtered = params.toString() !== '' && !(params.size === 1 && params.has('page'));
  return (
    <section aria-labelledby="audit-title">
      <div className="admin-heading">
        <h1 id="audit-title">Audit log</h1>
        <button type="button" className="button" onClick={() => void exportCsv()} disabled={exporting}>
          {exporting ? 'Preparing CSV…' : 'Export CSV'}
        </button>
      </div>
      <form className="admin-filters card" role="search" aria-label="Filter the audit log" onSubmit={apply} key={params.toString()}>
        <div className="field">
          <label htmlFor="audit-user">User</label>
          <input id="audit-user" name="user" defaultValue={form.user} list="audit-users" autoComplete="off" maxLength={100} />
          <datalist id="audit-users">
            {peopleList.map((user) => (
              <option key={user.id} value={user.username} />
            ))}
          </datalist>
        </div>
        <div className="field">
          <label htmlFor="audit-user-is">The user is</label>
          <select id="audit-user-is" name="user_is" defaultValue={form.userIs}>
            <option value="actor">who acted</option>
            <option value="target">whom it concerned</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="audit-action">Action</label>
          <input id="audit-action" name="action" defaultValue={form.action} list="audit-actions" autoComplete="off" maxLength={64} />
          <datalist id="audit-actions">
            {KNOWN_ACTIONS.map((action) => (
              <option key={action} value={action} />
            ))}
          </datalist>
        </div>
        <div className="field">
          <label htmlFor="audit-from">From</label>
          <input id="audit-from" name="from" type="date" defaultValue={form.from} />
        </div>
        <div className="field">
          <label htmlFor="audit-to">To (included)</label>
          <input id="audit-to" name="to" type="date" defaultValue={form.to} />
        </div>
        <div className="admin-filters__actions">
          <button type="submit" className="button button--primary">
            Apply filters
          </button>
          {filtered ? (
            <Link className="button" to="/admin/audit">
              Clear
            </Link>
          ) : null}
        </div>
      </form>
      <div aria-live="polite">{message ? <Alert tone={message.tone}>{message.text}</Alert> : null}</div>
      {people.error ? <Alert tone="warning">Account names could not be loaded: {people.error.message}</Alert> : null}
      {events.error ? <Alert>{events.error.message}</Alert> : null}
      {page === null && events.loading ? <p role="status">Loading the audit log…</p> : null}
      {page ? (
        <>
          <TableRegion
            testId="audit-table"
            caption={
              <>
                Audit events, newest first ({page.total}){events.loading ? <span className="muted"> · updating…</span> : null}
              </>
            }
          >
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Action</th>
                <th scope="col">Done by</th>
                <th scope="col">Concerning</th>
                <th scope="col">Details</th>
                <th scope="col">From address</th>
              </tr>
            </thead>
            <tbody>
              {page.items.length === 0 ? (
                <tr>
                  <td colSpan={6}>No event matches these filters.</td>
                </tr>
              ) : null}
              {page.items.map((event) => (
                <tr key={event.id} data-action={event.action}>
                  <th scope="row" className="admin-nowrap">
                    {formatDateTime(event.occurred_at)}
                  </th>
                  <td>
                    <code>{event.action}</code>
                  </td>
                  <td>{who(event.actor_id)}</td>
                  <td>{target(event)}</td>
                  <td className="admin-reason">{describeDetails(event.details) || '—'}</td>
                  <td>{event.ip_address ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </TableRegion>
          <Pager
            label="Pages of audit events"
            offset={offset}
            shown={page.items.length}
            total={page.total}
            onPrevious={() => goTo(previousOffset(offset, LIMIT))}
            onNext={() => goTo(offset + LIMIT)}
          />
        </>
      ) : null}
    </section>
  );
}
