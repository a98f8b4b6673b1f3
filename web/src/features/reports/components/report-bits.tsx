import { STATUS_LABEL, type ReportStatus, type ReportSummary } from '../api/types';

export function studyTitle(report: Pick<ReportSummary, 'study'>): string {
  return report.study.study_description ?? `${report.study.modality} study`;
}

export function StatusBadge({ status }: { status: ReportStatus }) {
  return (
    <span className={`badge badge--report-${status}`} data-testid="report-status" data-status={status}>
      {STATUS_LABEL[status]}
    </span>
  );
}
