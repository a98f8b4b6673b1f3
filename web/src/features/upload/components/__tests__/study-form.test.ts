import { describe, expect, it, vi } from 'vitest';

import { focusField } from '../../lib/focus-field';
import { firstInvalidField, MODALITIES, stillFromHeaders, validateStudy, type StudyDraft } from '../study-form';

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

describe('the study details the gateway would refuse', () => {
  const TODAY = '2026-12-31';
  const errorsOf = (change: Partial<StudyDraft>) => validateStudy({ ...STUDY, ...change }, TODAY);

  it('refuses a modality that is no DICOM code, and takes any code the gateway knows, in any case', () => {
    expect(errorsOf({ modality: 'XYZ' }).modality).toBe('XYZ is not a DICOM modality code. Use one such as CT, MR, CR, DX, US, MG, NM or PT.');
    expect(errorsOf({ modality: 'CT1' }).modality).toMatch(/not a DICOM modality code/);
    expect(errorsOf({ modality: '' }).modality).toBe('Enter the modality, e.g. CT or MR.');
    for (const modality of ['ct', ' MR ', 'RTSTRUCT', 'M3D', 'OPTBSV']) expect(errorsOf({ modality })).toEqual({});
  });

  it('keeps to the gateway\'s lengths, counted as it counts them', () => {
    expect(errorsOf({ patient_name: 'A'.repeat(200), study_description: 'D'.repeat(200), patient_id: 'P'.repeat(64) })).toEqual({});
    expect(errorsOf({ patient_name: 'A'.repeat(201) }).patient_name).toBe('At most 200 characters (now 201).');
    expect(errorsOf({ study_description: 'D'.repeat(201) }).study_description).toBe('At most 200 characters (now 201).');
    expect(errorsOf({ patient_id: 'P'.repeat(65) }).patient_id).toBe('At most 64 characters (now 65).');
    expect(errorsOf({ clinical_history: 'H'.repeat(4001) }).clinical_history).toBe('At most 4000 characters (now 4001).');
    // Spaces around are stripped by the gateway; a character outside the BMP is one, not two.
    expect(errorsOf({ patient_name: ` ${'A'.repeat(200)} `, patient_id: '😀'.repeat(64) })).toEqual({});
  });

  it('refuses control characters and dates before 1900, as the gateway does', () => {
    expect(errorsOf({ patient_name: 'DOE\u001b^JANE' }).patient_name).toMatch(/control character/);
    expect(errorsOf({ study_description: 'Head\tneck' }).study_description).toMatch(/control character/);
    expect(errorsOf({ clinical_history: 'Fall.\nPain.' })).toEqual({});
    expect(errorsOf({ study_date: '1899-12-31' }).study_date).toBe('The study date cannot be before 1900.');
  });

  // The server's schema, when the repository holds it (an empty match otherwise).
  const schemas = Object.values(
    import.meta.glob<string>('../../../../../../src/relaypacs/uploads/schemas.py', { query: '?raw', import: 'default', eager: true }),
  )[0];

  it.skipIf(schemas === undefined)('knows exactly the modality codes of the gateway', () => {
    const codes = /_MODALITY_CODES = """([^"]*)"""/.exec(schemas ?? '')?.[1]?.trim().split(/\s+/);
    expect(codes?.length).toBeGreaterThan(50);
    expect([...MODALITIES]).toEqual(codes);
  });
});
