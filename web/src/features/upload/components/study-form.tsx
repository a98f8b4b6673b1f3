import { Field } from '@/components/field';

import type { ServiceLevel, StudyMetadata } from '../engine/types';

/**
 * The modality codes the gateway accepts: a copy of _MODALITY_CODES in
 * src/relaypacs/uploads/schemas.py (StudyIn), kept in the same order. Change both together.
 */
export const MODALITIES: readonly string[] = `
  AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS
  KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN POS PR PT PX REG
  RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR
  SRF STAIN TEXTUREMAP TG US VA XA XC CD DD DS DM EC FA LP MA MS OPR ST VF`
  .trim()
  .split(/\s+/);

const MODALITY_SET = new Set(MODALITIES);

/** The gateway's longest values (StudyIn in src/relaypacs/uploads/schemas.py), in characters. */
export const MAX_LENGTHS = { patient_name: 200, patient_id: 64, study_description: 200, clinical_history: 4000 } as const;

/** Characters as Python counts them (code points), after the gateway strips the spaces around. */
function length(value: string | undefined): number {
  return Array.from((value ?? '').trim()).length;
}

/** The gateway refuses control characters (Unicode Cc), e.g. an escape read from DICOM headers. */
function hasControlCharacter(value: string | undefined): boolean {
  return Array.from(value ?? '').some((c) => {
    const code = c.codePointAt(0) ?? 0;
    return code < 0x20 || (code >= 0x7f && code <= 0x9f);
  });
}

export const SERVICE_LEVELS: { value: ServiceLevel; label: string; hint: string }[] = [
  { value: 'stat', label: 'STAT', hint: 'Read now (life-threatening)' },
  { value: 'emergency', label: 'Emergency', hint: 'Read within the hour' },
  { value: 'routine', label: 'Routine', hint: 'Read in the normal worklist' },
];

export type StudyDraft = Omit<StudyMetadata, 'service_level'> & { service_level: ServiceLevel };

export function validateStudy(study: StudyDraft, today: string): Partial<Record<keyof StudyDraft, string>> {
  const errors: Partial<Record<keyof StudyDraft, string>> = {};
  /** A free-text field: within the gateway's length, and without control characters. */
  const text = (key: keyof typeof MAX_LENGTHS): void => {
    const count = length(study[key]);
    if (count > MAX_LENGTHS[key]) errors[key] = `At most ${MAX_LENGTHS[key]} characters (now ${count}).`;
    else if (key !== 'clinical_history' && hasControlCharacter(study[key])) {
      errors[key] = 'Contains a control character the gateway does not accept. Retype it.';
    }
  };
  if (study.patient_name.trim() === '') errors.patient_name = 'Enter the patient name.';
  else text('patient_name');
  text('patient_id');
  if (!/^\d{4}-\d{2}-\d{2}$/.test(study.study_date)) errors.study_date = 'Enter the study date.';
  else if (study.study_date > today) errors.study_date = 'The study date cannot be in the future.';
  else if (study.study_date < '1900-01-01') errors.study_date = 'The study date cannot be before 1900.';
  const modality = study.modality.trim().toUpperCase();
  if (modality === '') errors.modality = 'Enter the modality, e.g. CT or MR.';
  else if (!MODALITY_SET.has(modality)) {
    errors.modality = `${modality} is not a DICOM modality code. Use one such as CT, MR, CR, DX, US, MG, NM or PT.`;
  }
  text('study_description');
  text('clinical_history');
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
      <Field label="Patient ID (optional)" name="patient_id" autoComplete="off" value={study.patient_id ?? ''} error={errors.patient_id} hint={hint('patient_id')} onChange={(e) => set('patient_id', e.target.value)} />
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
      <Field className="form-grid__wide" label="Study description (optional)" name="study_description" autoComplete="off" value={study.study_description ?? ''} error={errors.study_description} hint={hint('study_description')} onChange={(e) => set('study_description', e.target.value)} />
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
