import { Fragment, useEffect, useState, type SyntheticEvent } from 'react';
import { useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { formatBytes, formatDateTime } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';

import { getDeliveryTrace, listDeliveries, requeueDelivery, type Delivery, type DeliveryTrace } from '../api/admin';
import { useLoad } from '../hooks/use-load';
import { canRequeue, isView, listReason, stateLabel, traceReasons, VIEWS, type View } from '../lib/deliveries';
import { formText } from '../lib/form';
import { offsetOfPage, previousOffset } from '../lib/paging';
import { formatAge } from '../lib/time';

import { Pager } from './pager';
import { TableRegion } from './table-region';

const LIMIT = 25;

type Trace = { status: 'loading' } | { status: 'error'; message: string } | { status: 'ready'; trace: DeliveryTrace };
type Message = { tone: 'success' | 'error'; text: string };

function studyLabel(delivery: Delivery): string {
  return `${delivery.modality} ${delivery.study_date}`;
}

export function DeliveriesPage() {
  useDocumentTitle('Deliveries');
  const [params, setParams] = useSearchParams();
  const shown = params.get('show');
  const view: View = isView(shown) ? shown : 'attention';
  const offset = offsetOfPage(params.get('page'), LIMIT);
  const deliveries = useLoad(() => listDeliveries({ states: VIEWS[view].states, limit: LIMIT, offset }), `${view}:${offset}`);
  const [now, setNow] = useState(() => Date.now());
  // The state each requeue answered with, shown until the list is loaded again.
  const [requeued, setRequeued] = useState<Record<string, string>>({});
  const [requeueing, setRequeueing] = useState<string | null>(null);
  const [message, setMessage] = useState<Message | null>(null);
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const [traces, setTraces] = useState<Record<string, Trace>>({});

  useEffect(() => {
    // A fresh list: its states replace what requeues answered, and details fold (they are
    // fetched again when opened).
    setNow(Date.now());
    setRequeued({});
    setTraces({});
    setOpen({});
  }, [deliveries.data]);

  useEffect(() => {
    // Ages keep counting while the screen stays open (the list itself reloads on request only:
    // each listing is an audited access).
    const timer = setInterval(() => setNow(Date.now()), 30_000);
    return () => clearInterval(timer);
  }, []);

  function applyView(event: SyntheticEvent<HTMLFormElement>): void {
    event.preventDefault();
    const value = formText(new FormData(event.currentTarget), 'show');
    setParams(value && value !== 'attention' ? { show: value } : {});
  }

  function goTo(newOffset: number): void {
    const next = new URLSearchParams(params);
    const page = Math.floor(newOffset / LIMIT) + 1;
    if (page > 1) next.set('page', String(page));
    else next.delete('page');
    setParams(next);
  }

  async function loadTrace(id: string): Promise<void> {
    setTraces((current) => ({ ...current, [id]: { status: 'loading' } }));
    try {
      const trace = await getDeliveryTrace(id);
      setTraces((current) => ({ ...current, [id]: { status: 'ready', trace } }));
    } catch (error) {
      setTraces((current) => ({ ...current, [id]: { status: 'error', message: toUserFacingError(error).message } }));
    }
  }

  function toggle(id: string): void {
    const opening = !open[id];
    setOpen((current) => ({ ...current, [id]: opening }));
    if (opening) void loadTrace(id);
  }

  async function requeue(delivery: Delivery): Promise<void> {
    setRequeueing(delivery.upload_id);
    setMessage(null);
    try {
      const answer = await requeueDelivery(delivery.upload_id);
      setRequeued((current) => ({ ...current, [delivery.upload_id]: answer.state }));
      setMessage({
        tone: 'success',
        text: `Requeued the ${studyLabel(delivery)} study of ${delivery.owner_username}: it is ${stateLabel(answer.state).toLowerCase()} and will be sent again. Refresh to follow it.`,
      });
      if (open[delivery.upload_id]) void loadTrace(delivery.upload_id);
    } catch (error) {
      setMessage({ tone: 'error', text: `Could not requeue: ${toUserFacingError(error).message}` });
    } finally {
      setRequeueing(null);
    }
  }

  const page = deliveries.data;
  return (
    <section aria-labelledby="deliveries-title">
      <div className="admin-heading">
        <h1 id="deliveries-title">Deliveries</h1>
        <button type="button" className="button" onClick={deliveries.reload} disabled={deliveries.loading}>
          {deliveries.loading ? 'Refreshing…' : 'Refresh'}
        </button>
      </div>
      <p className="muted">Studies the gateway could not deliver to the PACS, or that are still waiting for it.</p>
      <form className="admin-filters card" aria-label="Which deliveries" onSubmit={applyView} key={view}>
        <div className="field">
          <label htmlFor="deliveries-show">Show</label>
          <select id="deliveries-show" name="show" defaultValue={view}>
            {Object.entries(VIEWS).map(([key, value]) => (
              <option key={key} value={key}>
                {value.label}
              </option>
            ))}
          </select>
        </div>
        <div className="admin-filters__actions">
          <button type="submit" className="button button--primary">
            Apply
          </button>
        </div>
      </form>
      <div aria-live="polite">
        {message ? (
          <Alert tone={message.tone}>
            <span data-testid="requeue-message">{message.text}</span>
          </Alert>
        ) : null}
      </div>
      {deliveries.error ? <Alert>{deliveries.error.message}</Alert> : null}
      {page === null && deliveries.loading ? <p role="status">Loading deliveries…</p> : null}
      {page ? (
        <>
          <TableRegion
            testId="deliveries-table"
            caption={
              <>
                {VIEWS[view].label} ({page.total}){deliveries.loading ? <span className="muted"> · updating…</span> : null}
              </>
            }
          >
            <thead>
              <tr>
                <th scope="col">Study</th>
                <th scope="col">Uploaded by</th>
                <th scope="col">State</th>
                <th scope="col">Reason</th>
                <th scope="col">Age</th>
                <th scope="col">Last change</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {page.items.length === 0 ? (
                <tr>
                  <td colSpan={7}>No study is in this view.</td>
                </tr>
              ) : null}
              {page.items.map((delivery) => {
                const id = delivery.upload_id;
                const state = requeued[id] ?? delivery.state;
                const detailsId = `delivery-details-${id}`;
                const trace = traces[id];
                return (
                  <Fragment key={id}>
                    <tr data-upload-id={id} data-state={state}>
                      <th scope="row">
                        <span className="admin-nowrap">{studyLabel(delivery)}</span>{' '}
                        <span className={`badge badge--${delivery.service_level}`}>{delivery.service_level.toUpperCase()}</span>
                        <div className="muted admin-note">
                          {delivery.study_description ?? 'No description'} · {delivery.instance_count} image
                          {delivery.instance_count === 1 ? '' : 's'} · {formatBytes(delivery.bytes_total)}
                        </div>
                      </th>
                      <td className="admin-nowrap">{delivery.owner_username}</td>
                      <td>
                        <span className={`badge badge--${state}`} data-testid="delivery-state">
                          {stateLabel(state)}
                        </span>
                      </td>
                      <td className="admin-reason" data-testid="delivery-reason">
                        {requeued[id] ? 'Requeued by you.' : listReason(delivery)}
                      </td>
                      <td className="admin-nowrap" title={formatDateTime(delivery.created_at)}>
                        {formatAge(delivery.created_at, now)}
                      </td>
                      <td className="admin-nowrap" title={formatDateTime(delivery.updated_at)}>
                        {formatAge(delivery.updated_at, now)} ago
                      </td>
                      <td>
                        <div className="admin-row-actions">
                          {canRequeue({ state }) ? (
                            <button
                              type="button"
                              className="button admin-small button--primary"
                              disabled={requeueing !== null}
                              onClick={() => void requeue(delivery)}
                            >
                              {requeueing === id ? 'Requeueing…' : 'Requeue'}
                              <span className="visually-hidden">
                                {' '}
                                the {studyLabel(delivery)} study of {delivery.owner_username}
                              </span>
                            </button>
                          ) : null}
                          <button
                            type="button"
                            className="button admin-small"
                            aria-expanded={Boolean(open[id])}
                            aria-controls={detailsId}
                            onClick={() => toggle(id)}
                          >
                            {open[id] ? 'Hide details' : 'Details'}
                            <span className="visually-hidden">
                              {' '}
                              of the {studyLabel(delivery)} study of {delivery.owner_username}
                            </span>
                          </button>
                        </div>
                      </td>
                    </tr>
                    <tr id={detailsId} className="admin-details-row" hidden={!open[id]}>
                      <td colSpan={7}>{open[id] ? <TraceView trace={trace} /> : null}</td>
                    </tr>
                  </Fragment>
                );
              })}
            </tbody>
          </TableRegion>
          <Pager
            label="Pages of deliveries"
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

function TraceView({ trace }: { trace: Trace | undefined }) {
  if (!trace || trace.status === 'loading') return <p role="status">Loading the timeline…</p>;
  if (trace.status === 'error') return <Alert>{trace.message}</Alert>;
  const { lastNote, lastNoteAt, pacsReasons } = traceReasons(trace.trace);
  return (
    <div className="admin-trace" data-testid="delivery-trace">
      <p>
        <strong>Last attempt:</strong> {lastNote ?? 'no note recorded'}
        {lastNoteAt ? <span className="muted"> ({formatDateTime(lastNoteAt)})</span> : null}
      </p>
      {pacsReasons.length > 0 ? (
        <>
          <p>
            <strong>What the PACS answered for images it did not store:</strong>
          </p>
          <ul>
            {pacsReasons.map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
        </>
      ) : null}
      <ol className="admin-trace__timeline">
        {trace.trace.timeline.map((event, index) => (
          <li key={`${event.at}-${index}`}>
            <span className="admin-nowrap">{formatDateTime(event.at)}</span> · {stateLabel(event.state)}
            {event.detail ? ` — ${event.detail}` : ''}
          </li>
        ))}
      </ol>
    </div>
  );
}
