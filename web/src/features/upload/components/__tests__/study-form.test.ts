import { describe, expect, it, vi } from 'vitest';

import { focusField } from '../../lib/focus-field';
import { firstInvalidField, stillFromHeaders, validateStudy, type StudyDraft } from '../study-form';

const STUDY: StudyDraft = {
  patient_name: 'DOE^JANE',
  patient_id: 'P-1',
  study_date: '2026-03-04',
  modality: 'CT',
  service_level: 'routine',
  study_description: 'Head',
  clinical_history: '',
};

describe('sending a study with a field to correct', () => {
  it('picks the first field to correct, in the order of the form', () => {
    expect(firstInvalidField(validateStudy({ ...STUDY, patient_name: ' ', modality: '' }, '2026-12-31'))).toBe('patient_name');
    expect(firstInvalidField(validateStudy({ ...STUDY, modality: 'C T' }, '2026-12-31'))).toBe('modality');
    expect(firstInvalidField(validateStudy({ ...STUDY, study_date: '2027-01-01' }, '2026-12-31'))).toBe('study_date');
    expect(firstInvalidField(validateStudy(STUDY, '2026-12-31'))).toBeNull();
  });

  it('moves the focus to that field and brings it on screen', () => {
    const field = { focus: vi.fn(), scrollIntoView: vi.fn() };
    const asked: string[] = [];
    const form = {
      querySelector: (selector: string) => {
        asked.push(selector);
        return field;
      },
    } as unknown as HTMLFormElement;
    expect(focusField(form, 'patient_name')).toBe(true);
    expect(asked).toEqual(['[name="patient_name"]']);
    expect(field.focus).toHaveBeenCalledTimes(1);
    expect(field.scrollIntoView).toHaveBeenCalledWith({ block: 'center' });
    const empty = { querySelector: () => null } as unknown as HTMLFormElement;
    expect(focusField(empty, 'mixed-confirm')).toBe(false);
  });
});

describe('the "Read from the DICOM files" hint', () => {
  const fromHeaders = new Set(['patient_name', 'study_date', 'modality']);

  it('goes from a field once the user edits it, and stays on the others', () => {
    const kept = stillFromHeaders(fromHeaders, STUDY, { ...STUDY, patient_name: 'DOE^JOHN' });
    expect([...kept].sort()).toEqual(['modality', 'study_date']);
    expect(fromHeaders.has('patient_name')).toBe(true); // the set it was given is left alone
  });

  it('stays when nothing read from the files changed', () => {
    expect(stillFromHeaders(fromHeaders, STUDY, { ...STUDY, clinical_history: 'Fall.' })).toBe(fromHeaders);
  });
});
