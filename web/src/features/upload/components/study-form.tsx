import { Field } from '@/components/field';

import type { ServiceLevel, StudyMetadata } from '../engine/types';

export const MODALITIES = ['CT', 'MR', 'CR', 'DX', 'US', 'MG', 'NM', 'PT', 'XA', 'RF', 'OT', 'SR', 'ES', 'IO', 'OP', 'SM'];

export const SERVICE_LEVELS: { value: ServiceLevel; label: string; hint: string }[] = [
  { value: 'stat', label: 'STAT', hint: 'Read now (life-threatening)' },
  { value: 'emergency', label: 'Emergency', hint: 'Read within the hour' },
  { value: 'routine', label: 'Routine', hint: 'Read in the normal worklist' },
];

export type StudyDraft = Omit<StudyMetadata, 'service_level'> & { service_level: ServiceLevel };

export function validateStudy(study: StudyDraft, today: string): Partial<Record<keyof StudyDraft, string>> {
  const errors: Partial<Record<keyof StudyDraft, string>> = {};
  if (study.patient_name.trim() === '') errors.patient_name = 'Enter the patient name.';
  if (!/^\d{4}-\d{2}-\d{2}$/.test(study.study_date)) errors.study_date = 'Enter the study date.';
  else if (study.study_date > today) errors.study_date = 'The study date cannot be in the future.';
  if (!/^[A-Z0-9]{1,16}$/.test(study.modality.trim().toUpperCase())) errors.modality = 'Enter a DICOM modality code, e.g. CT or MR.';
  if ((study.clinical_history ?? '').length > 4000) errors.clinical_history = 'At most 4000 characters.';
  return errors;
}

/** The form's fields in the order a person meets them: the first invalid one gets the focus. */
const FIELD_ORDER: (keyof StudyDraft)[] = ['patient_name', 'patient_id', 'study_date', 'modality', 'study_description', 'clinical_history', 'service_level'];

export function firstInvalidField(errors: Partial<Record<keyof StudyDraft, string>>): keyof StudyDraft | null {
  return FIELD_ORDER.find((key) => errors[key] !== undefined) ?? null;
}

/**
 * The fields still showing the values read from the DICOM files: a field the user has edited is
 * theirs now, and no longer says "Read from the DICOM files".
 */
export function stillFromHeaders(fromHeaders: ReadonlySet<string>, before: StudyDraft, after: StudyDraft): ReadonlySet<string> {
  const edited = FIELD_ORDER.filter((key) => before[key] !== after[key] && fromHeaders.has(key));
  if (edited.length === 0) return fromHeaders;
  const kept = new Set(fromHeaders);
  for (const key of edited) kept.delete(key);
  return kept;
}

interface StudyFormProps {
  study: StudyDraft;
  errors: Partial<Record<keyof StudyDraft, string>>;
  onChange: (study: StudyDraft) => void;
  /** fields whose value came from the DICOM headers */
  fromHeaders: ReadonlySet<string>;
}

export function StudyForm({ study, errors, onChange, fromHeaders }: StudyFormProps) {
  const set = <K extends keyof StudyDraft>(key: K, value: StudyDraft[K]): void => onChange({ ...study, [key]: value });
  const hint = (key: string): string | undefined => (fromHeaders.has(key) ? 'Read from the DICOM files' : undefined);
  return (
    <div className="form-grid">
      <Field label="Patient name" name="patient_name" autoComplete="off" required value={study.patient_name} error={errors.patient_name} hint={hint('patient_name')} onChange={(e) => set('patient_name', e.target.value)} />
      <Field label="Patient ID (optional)" name="patient_id" autoComplete="off" value={study.patient_id ?? ''} hint={hint('patient_id')} onChange={(e) => set('patient_id', e.target.value)} />
      <Field label="Study date" name="study_date" type="date" required value={study.study_date} error={errors.study_date} hint={hint('study_date')} onChange={(e) => set('study_date', e.target.value)} />
      <Field
        label="Modality"
        name="modality"
        list="modalities"
        autoCapitalize="characters"
        autoComplete="off"
        required
        value={study.modality}
        error={errors.modality}
        hint={hint('modality')}
        onChange={(e) => set('modality', e.target.value.toUpperCase())}
      />
      <datalist id="modalities">
        {MODALITIES.map((m) => (
          <option key={m} value={m} />
        ))}
      </datalist>
      <Field className="form-grid__wide" label="Study description (optional)" name="study_description" autoComplete="off" value={study.study_description ?? ''} hint={hint('study_description')} onChange={(e) => set('study_description', e.target.value)} />
      <div className="field form-grid__wide">
        <label htmlFor="clinical_history">Clinical history (optional)</label>
        <textarea
          id="clinical_history"
          name="clinical_history"
          rows={4}
          maxLength={4000}
          aria-describedby="clinical_history-hint"
          value={study.clinical_history ?? ''}
          onChange={(e) => set('clinical_history', e.target.value)}
        />
        <p id="clinical_history-hint" className="field__hint">
          Symptoms and the question for the radiologist.
        </p>
      </div>
      <fieldset className="field form-grid__wide">
        <legend>Service level</legend>
        <div className="choices choices--row">
          {SERVICE_LEVELS.map((level) => (
            <label key={level.value} className={`choice choice--${level.value}`}>
              <input type="radio" name="service_level" value={level.value} checked={study.service_level === level.value} onChange={() => set('service_level', level.value)} />
              <span>
                <strong>{level.label}</strong>
                <span className="choice__hint">{level.hint}</span>
              </span>
            </label>
          ))}
        </div>
      </fieldset>
    </div>
  );
}
