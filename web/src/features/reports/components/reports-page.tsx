import { useEffect, useId, useState } from 'react';
import { Link, useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { Pager } from '@/components/pager';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { offsetOfPage, pageOfOffset, previousOffset } from '@/lib/paging';
import { toUserFacingError } from '@/lib/problem';

import { cachedList, listReports, REPORTS_PAGE_SIZE, type ReportList } from '../api/reports';
import { STATUS_LABEL, type ReportStatus } from '../api/types';
import { reportIdOf } from '../lib/form';

import { StatusBadge, studyTitle } from './report-bits';

const STATUSES = Object.keys(STATUS_LABEL) as ReportStatus[];

function parseStatus(value: string | null): ReportStatus | null {
  return value && (STATUSES as string[]).includes(value) ? (value as ReportStatus) : null;
}

export function ReportsPage() {
  useDocumentTitle('Reports');
  const network = useNetworkStatus();
  const filterId = useId();
  const [params, setParams] = useSearchParams();
  const status = parseStatus(params.get('status'));
  // The page is in the URL (?page=2), so Back and a shared link keep it.
  const offset = offsetOfPage(params.get('page'), REPORTS_PAGE_SIZE);
  const [list, setList] = useState<ReportList | null>(null);
  const [seenAt, setSeenAt] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [revision, setRevision] = useState(0);

  // A report that changes (ready, asked for more, a new delivery) refreshes the list live.
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const refresh = (): void => {
      clearTimeout(timer);
      // Several events in a burst (the notification, then the count) make one request.
      timer = setTimeout(() => setRevision((n) => n + 1), 250);
    };
    const offEvent = liveEvents.subscribe('notification', (data) => {
      if (reportIdOf(data)) refresh();
    });
    const offOpen = liveEvents.onOpen(refresh);
    return () => {
      clearTimeout(timer);
      offEvent();
      offOpen();
    };
  }, []);

  useEffect(() => {
    let stopped = false;
    void cachedList(status, offset).then((cached) => {
      if (stopped || !cached) return;
      setList((current) => current ?? cached);
      setSeenAt((current) => current ?? cached.fetched_at);
    });
    if (network !== 'offline') {
      listReports(status, offset)
        .then((fresh) => {
          if (stopped) return;
          setList(fresh);
          setSeenAt(null);
          setProblem(null);
        })
        .catch((error: unknown) => {
          if (!stopped) setProblem(toUserFacingError(error).message);
        });
    }
    return () => {
      stopped = true;
    };
  }, [status, offset, network, revision]);

  const choose = (value: string): void => {
    setList(null);
    setParams(value ? { status: value } : {}, { replace: true });
  };

  const goTo = (newOffset: number): void => {
    const next: Record<string, string> = {};
    if (status) next.status = status;
    const page = pageOfOffset(newOffset, REPORTS_PAGE_SIZE);
    if (page > 1) next.page = String(page);
    setList(null);
    setSeenAt(null);
    setParams(next);
  };

  return (
    <section aria-labelledby="reports-title">
      <h1 id="reports-title">Reports</h1>
      <div className="card">
        <div className="toolbar">
          <div className="field field--inline">
            <label htmlFor={filterId}>Status</label>
            <select id={filterId} value={status ?? ''} onChange={(event) => choose(event.target.value)}>
              <option value="">All</option>
              {STATUSES.map((value) => (
                <option key={value} value={value}>
                  {STATUS_LABEL[value]}
                </option>
              ))}
            </select>
          </div>
          {list ? (
            <p className="muted" data-testid="reports-total">
              {`${list.total} ${list.total === 1 ? 'report' : 'reports'}`}
            </p>
          ) : null}
        </div>
        {network === 'offline' ? (
          <Alert tone="info">
            You are offline: this is the list as it was last seen{seenAt ? ` (${formatDateTime(seenAt)})` : ''}.
          </Alert>
        ) : problem ? (
          <Alert tone="warning">{problem}</Alert>
        ) : null}
        {list === null && !problem && network !== 'offline' ? <p role="status">Loading…</p> : null}
        {list === null && network === 'offline' ? <p>No reports were saved on this device yet.</p> : null}
        {list?.items.length === 0 ? <p>{offset > 0 ? 'No reports on this page.' : status ? 'No reports with this status.' : 'No reports yet: they appear once a study is in the PACS.'}</p> : null}
        {list && list.items.length > 0 ? (
          <ul className="report-list" data-testid="reports">
            {list.items.map((report) => (
              <li key={report.id} data-report-id={report.id}>
                <Link to={`/reports/${report.id}`} className="report-list__item">
                  <span className="report-list__title">{studyTitle(report)}</span>
                  <span className="muted">
                    {report.study.patient_name.replace(/\^/g, ' ')} · {report.study.modality} · {report.study.study_date}
                  </span>
                  <span className="muted">
                    Uploaded {formatDateTime(report.uploaded_at)} · Radiologist: {report.radiologist ?? 'not yet assigned'}
                  </span>
                  <StatusBadge status={report.status} />
                </Link>
              </li>
            ))}
          </ul>
        ) : null}
        {list && (offset > 0 || list.items.length < list.total) ? (
          <Pager
            label="Pages of reports"
            offset={offset}
            shown={list.items.length}
            total={list.total}
            previousText="Newer"
            nextText="Older"
            onPrevious={() => goTo(previousOffset(offset, REPORTS_PAGE_SIZE))}
            onNext={() => goTo(offset + REPORTS_PAGE_SIZE)}
          />
        ) : null}
      </div>
    </section>
  );
}
