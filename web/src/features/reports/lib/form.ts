import type { EditableStatus, Report, ReportUpdate } from '../api/types';

export interface EditorForm {
  status: EditableStatus;
  radiologist: string;
  text: string;
  message: string;
}

export function initialForm(report: Report): EditorForm {
  return {
    status: report.status === 'assigned' ? 'pending' : report.status,
    radiologist: report.radiologist ?? '',
    text: report.text ?? '',
    message: report.message ?? '',
  };
}

export type FormErrors = Partial<Record<keyof EditorForm, string>>;

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** What the gateway would refuse, said before sending. */
export function validateForm(form: EditorForm): FormErrors {
  const errors: FormErrors = {};
  if (form.status === 'additional_data_required' && form.message.trim() === '') {
    errors.message = 'Say what is needed from the sender.';
  }
  if (form.status === 'ready' && form.text.trim() === '') {
    errors.text = 'A ready report needs its text.';
  }
  if (form.radiologist.length > 200) errors.radiologist = 'At most 200 characters.';
  if (hasControlCharacter(form.radiologist)) errors.radiologist = 'One line, without control characters.';
  return errors;
}

/** The PATCH body: only what changed, and the message only with its status. */
export function toUpdate(form: EditorForm, report: Report): ReportUpdate {
  const update: ReportUpdate = {};
  if (form.status !== report.status) update.status = form.status;
  const radiologist = form.radiologist.trim();
  if (radiologist && radiologist !== (report.radiologist ?? '')) update.radiologist = radiologist;
  if (form.text.trim() && form.text !== (report.text ?? '')) update.text = form.text;
  if (form.status === 'additional_data_required') {
    update.status = form.status;
    update.message = form.message.trim();
  }
  return update;
}

/** The report id a live event is about, when it is about one. */
export function reportIdOf(data: unknown): string | null {
  if (typeof data !== 'object' || data === null) return null;
  const id = (data as { report_id?: unknown }).report_id;
  return typeof id === 'string' ? id : null;
}
