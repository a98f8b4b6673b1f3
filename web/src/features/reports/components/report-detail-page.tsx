import { useEffect, useRef, useState } from 'react';
import { Link, useParams } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatDateTime } from '@/lib/format';
import { liveEvents } from '@/lib/live-events';
import { toUserFacingError } from '@/lib/problem';

import { downloadReportPdf, getReport, syncReport } from '../api/reports';
import { isFull, type Report, type ReportSummary } from '../api/types';
import { cachedReport } from '../lib/cache';
import { reportIdOf } from '../lib/form';

import { ReportEditor } from './report-editor';
import { StatusBadge, studyTitle } from './report-bits';

const SOURCE_LABEL: Record<NonNullable<Report['source']>, string> = {
  manual: 'Written in RelayPACS.',
  structured_report: 'From the structured report in the PACS.',
  encapsulated_pdf: 'From the PDF in the PACS.',
};

function Facts({ report }: { report: Report | ReportSummary }) {
  return (
    <dl className="facts">
      <dt>Patient</dt>
      <dd>{report.study.patient_name.replace(/\^/g, ' ')}</dd>
      <dt>Study</dt>
      <dd>
        {report.study.modality} · {report.study.study_date}
      </dd>
      <dt>Service level</dt>
      <dd>
        <span className={`badge badge--${report.study.service_level}`}>{report.study.service_level.toUpperCase()}</span>
      </dd>
      <dt>Uploaded</dt>
      <dd>{formatDateTime(report.uploaded_at)}</dd>
      <dt>In the PACS since</dt>
      <dd>{formatDateTime(report.delivered_at)}</dd>
      <dt>Radiologist</dt>
      <dd>{report.radiologist ?? 'not yet assigned'}</dd>
      {report.ready_at ? (
        <>
          <dt>Ready</dt>
          <dd>{formatDateTime(report.ready_at)}</dd>
        </>
      ) : null}
    </dl>
  );
}

/** One report: its status, text and PDF; radiologists and admins (`canEdit`) also report here. */
export function ReportDetailPage({ canEdit }: { canEdit: boolean }) {
  const { id = '' } = useParams();
  const network = useNetworkStatus();
  const [loaded, setReport] = useState<Report | ReportSummary | null>(null);
  // Another report's page (a notification link followed from here) starts empty, not stale.
  const report = loaded?.id === id ? loaded : null;
  const [problem, setProblem] = useState<string | null>(null);
  const [missing, setMissing] = useState(false);
  const [action, setAction] = useState<{ busy: 'pdf' | 'sync' | null; message: string | null; error: string | null }>({ busy: null, message: null, error: null });
  const [revision, setRevision] = useState(0);
  const headingRef = useRef<HTMLHeadingElement>(null);
  useDocumentTitle(report ? `Report: ${studyTitle(report)}` : 'Report');
  useEffect(() => headingRef.current?.focus(), []);

  useEffect(
    () =>
      liveEvents.subscribe('notification', (data) => {
        if (reportIdOf(data) === id) setRevision((n) => n + 1);
      }),
    [id],
  );

  useEffect(() => {
    let stopped = false;
    void cachedReport(id).then((cached) => {
      if (stopped || !cached) return;
      setReport((current) => (current?.id === id ? current : cached.report));
    });
    if (network !== 'offline') {
      getReport(id)
        .then((fresh) => {
          if (stopped) return;
          setReport(fresh);
          setProblem(null);
        })
        .catch((error: unknown) => {
          if (stopped) return;
          const failure = toUserFacingError(error);
          if (failure.status === 404) setMissing(true);
          setProblem(failure.message);
        });
    }
    return () => {
      stopped = true;
    };
  }, [id, network, revision]);

  const download = async (): Promise<void> => {
    setAction({ busy: 'pdf', message: null, error: null });
    try {
      await downloadReportPdf(id);
      setAction({ busy: null, message: 'The PDF is downloading.', error: null });
    } catch (error) {
      setAction({ busy: null, message: null, error: toUserFacingError(error).message });
    }
  };

  const sync = async (): Promise<void> => {
    setAction({ busy: 'sync', message: null, error: null });
    try {
      const fresh = await syncReport(id);
      setReport(fresh);
      setAction({ busy: null, message: fresh.status === 'ready' ? 'The report is ready.' : 'The PACS has no report for this study yet.', error: null });
    } catch (error) {
      setAction({ busy: null, message: null, error: toUserFacingError(error).message });
    }
  };

  const offline = network === 'offline';
  const full = report && isFull(report) ? report : null;

  return (
    <section aria-labelledby="report-title">
      <h1 id="report-title" ref={headingRef} tabIndex={-1}>
        {report ? studyTitle(report) : 'Report'}
      </h1>
      {offline ? (
        <Alert tone="info">{report ? 'You are offline: this is the report as it was last seen.' : 'You are offline and this report was not saved on this device.'}</Alert>
      ) : problem ? (
        <Alert tone={missing ? 'error' : 'warning'}>{missing ? 'There is no such report, or it is not yours to see.' : problem}</Alert>
      ) : null}
      {report === null && !offline && !problem ? <p role="status">Loading…</p> : null}
      {report ? (
        <>
          <div className="card" data-testid="report-detail" data-status={report.status}>
            <p>
              <StatusBadge status={report.status} />
            </p>
            <Facts report={report} />
            {full?.status === 'additional_data_required' && full.message ? (
              <Alert tone="warning">
                <p>
                  <strong>The radiologist needs more information:</strong> {full.message}
                </p>
              </Alert>
            ) : null}
            {full ? (
              full.text ? (
                <>
                  <h2>Report</h2>
                  <div className="report-text" data-testid="report-text">
                    {full.text}
                  </div>
                  {full.source ? <p className="muted">{SOURCE_LABEL[full.source]}</p> : null}
                </>
              ) : (
                <p className="muted">{report.status === 'ready' ? 'The report has no text here; see the PDF.' : 'No report text yet.'}</p>
              )
            ) : (
              <p className="muted">The full report was not opened on this device before going offline.</p>
            )}
            <div className="actions">
              {report.status === 'ready' ? (
                <button type="button" className="button button--primary" onClick={() => void download()} disabled={offline || action.busy !== null}>
                  {action.busy === 'pdf' ? 'Downloading…' : 'Download PDF'}
                </button>
              ) : (
                <button type="button" className="button" onClick={() => void sync()} disabled={offline || action.busy !== null}>
                  {action.busy === 'sync' ? 'Asking the PACS…' : 'Check the PACS now'}
                </button>
              )}
            </div>
            <p role="status" className="muted">
              {action.message}
            </p>
            {action.error ? <Alert>{action.error}</Alert> : null}
          </div>
          {canEdit && full ? (
            <ReportEditor
              key={full.id}
              report={full}
              disabled={offline}
              onSaved={(fresh) => setReport(fresh)}
            />
          ) : null}
        </>
      ) : null}
      <p>
        <Link to="/reports">All reports</Link>
      </p>
    </section>
  );
}
