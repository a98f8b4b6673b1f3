// The reports feature's public surface, for the app layer.
export { ReportDetailPage } from './components/report-detail-page';
export { ReportsPage } from './components/reports-page';
export { clearReportCache } from './lib/cache';
