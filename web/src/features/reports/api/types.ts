export type ReportStatus = 'assigned' | 'pending' | 'additional_data_required' | 'ready';
export type EditableStatus = Exclude<ReportStatus, 'assigned'>;

export interface Study {
  patient_name: string;
  patient_id: string | null;
  study_date: string;
  modality: string;
  service_level: string;
  study_description: string | null;
  study_instance_uid: string | null;
}

export interface ReportSummary {
  id: string;
  upload_id: string;
  owner_id: string;
  status: ReportStatus;
  study: Study;
  uploaded_at: string;
  delivered_at: string;
  radiologist: string | null;
  updated_at: string;
  ready_at: string | null;
}

export interface Report extends ReportSummary {
  text: string | null;
  message: string | null;
  source: 'manual' | 'structured_report' | 'encapsulated_pdf' | null;
  has_pacs_pdf: boolean;
  last_synced_at: string | null;
  sync_error: string | null;
}

export interface ReportUpdate {
  status?: EditableStatus;
  radiologist?: string;
  text?: string;
  message?: string;
}

export const STATUS_LABEL: Record<ReportStatus, string> = {
  assigned: 'Waiting for a radiologist',
  pending: 'Being read',
  additional_data_required: 'More information needed',
  ready: 'Ready',
};

export function isFull(report: Report | ReportSummary): report is Report {
  return 'text' in report;
}
