import { useId, useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { Field } from '@/components/field';
import { toUserFacingError } from '@/lib/problem';

import { updateReport } from '../api/reports';
import { STATUS_LABEL, type EditableStatus, type Report } from '../api/types';
import { initialForm, toUpdate, validateForm, type EditorForm, type FormErrors } from '../lib/form';

const EDITABLE: EditableStatus[] = ['pending', 'additional_data_required', 'ready'];

/** Radiologists and admins: take the report, ask the sender for more, or make it ready. */
export function ReportEditor({ report, onSaved, disabled }: { report: Report; onSaved: (report: Report) => void; disabled: boolean }) {
  const ids = { status: useId(), text: useId(), message: useId() };
  const [form, setForm] = useState<EditorForm>(() => initialForm(report));
  const [errors, setErrors] = useState<FormErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  const change = <K extends keyof EditorForm>(key: K, value: EditorForm[K]): void => {
    setForm((current) => ({ ...current, [key]: value }));
    setSaved(false);
  };

  const submit = async (event: SyntheticEvent): Promise<void> => {
    event.preventDefault();
    const found = validateForm(form);
    setErrors(found);
    if (Object.keys(found).length > 0) {
      const first = Object.keys(found)[0] as keyof EditorForm;
      document.getElementById(first === 'radiologist' ? 'report-radiologist' : ids[first as 'text' | 'message'])?.focus();
      return;
    }
    const update = toUpdate(form, report);
    if (Object.keys(update).length === 0) {
      setSaved(true);
      return;
    }
    setBusy(true);
    setFailure(null);
    try {
      const fresh = await updateReport(report.id, update);
      setForm(initialForm(fresh));
      setSaved(true);
      onSaved(fresh);
    } catch (caught) {
      setFailure(toUserFacingError(caught).message);
    } finally {
      setBusy(false);
    }
  };

  const describe = (key: 'text' | 'message'): string | undefined => (errors[key] ? `${ids[key]}-error` : undefined);

  return (
    <form className="card report-editor" onSubmit={(event) => void submit(event)} noValidate aria-labelledby="report-editor-title">
      <h2 id="report-editor-title">Reporting</h2>
      <div className="field">
        <label htmlFor={ids.status}>Status</label>
        <select id={ids.status} value={form.status} onChange={(event) => change('status', event.target.value as EditableStatus)}>
          {EDITABLE.map((value) => (
            <option key={value} value={value}>
              {STATUS_LABEL[value]}
            </option>
          ))}
        </select>
      </div>
      <Field
        id="report-radiologist"
        label="Radiologist (name shown on the report)"
        value={form.radiologist}
        maxLength={200}
        autoComplete="name"
        onChange={(event) => change('radiologist', event.target.value)}
        error={errors.radiologist ?? null}
      />
      {form.status === 'additional_data_required' ? (
        <div className="field">
          <label htmlFor={ids.message}>What is needed from the sender</label>
          <textarea
            id={ids.message}
            rows={3}
            maxLength={2000}
            value={form.message}
            aria-invalid={errors.message ? true : undefined}
            aria-describedby={describe('message')}
            onChange={(event) => change('message', event.target.value)}
          />
          {errors.message ? (
            <p id={`${ids.message}-error`} className="field__error">
              {errors.message}
            </p>
          ) : null}
        </div>
      ) : null}
      <div className="field">
        <label htmlFor={ids.text}>Report text</label>
        <textarea
          id={ids.text}
          rows={8}
          maxLength={100_000}
          value={form.text}
          aria-invalid={errors.text ? true : undefined}
          aria-describedby={describe('text')}
          onChange={(event) => change('text', event.target.value)}
        />
        {errors.text ? (
          <p id={`${ids.text}-error`} className="field__error">
            {errors.text}
          </p>
        ) : null}
      </div>
      {failure ? <Alert>{failure}</Alert> : null}
      {saved ? <Alert tone="success">Saved.</Alert> : null}
      <div className="actions">
        <button type="submit" className="button button--primary" disabled={busy || disabled}>
          {busy ? 'Saving…' : 'Save'}
        </button>
      </div>
    </form>
  );
}
