/** From the headers of the chosen files to a pre-filled study and the warnings a person must see. */
import type { StudyMetadata } from '../engine/types';

import type { DicomHeader, Inspected } from './read-headers';

export interface StudyCheck {
  prefill: Partial<StudyMetadata>;
  patients: string[];
  studies: string[];
  modalities: string[];
  mixedPatients: boolean;
  mixedStudies: boolean;
  dicomCount: number;
  dicomBytes: number;
  leftOut: { name: string; reason: string }[];
}

function distinct(values: (string | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => v !== undefined && v !== ''))];
}

function mostCommon(values: (string | undefined)[]): string | undefined {
  const counts = new Map<string, number>();
  for (const value of values) if (value) counts.set(value, (counts.get(value) ?? 0) + 1);
  let best: string | undefined;
  let bestCount = 0;
  for (const [value, count] of counts) {
    if (count > bestCount) {
      best = value;
      bestCount = count;
    }
  }
  return best;
}

/** "20240131" (DICOM DA) → "2024-01-31"; anything else → undefined. */
export function dicomDate(value: string | undefined): string | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(value?.trim() ?? '');
  return match ? `${match[1]}-${match[2]}-${match[3]}` : undefined;
}

/** "DOE^JOHN^^^" → "DOE^JOHN": empty trailing name components carry nothing. */
export function personName(value: string | undefined): string | undefined {
  const cleaned = value?.trim().replace(/\^+$/, '');
  return cleaned === '' ? undefined : cleaned;
}

function patientKey(header: DicomHeader): string | undefined {
  const name = personName(header.patientName);
  if (!name && !header.patientId) return undefined;
  return [name ?? '?', header.patientId ?? '?'].join(' / ');
}

export function checkStudy(files: Inspected[]): StudyCheck {
  const dicom = files.filter((f) => f.kind === 'dicom');
  const headers = dicom.map((f) => f.header);
  const patients = distinct(headers.map(patientKey));
  const studies = distinct(headers.map((h) => h.studyInstanceUid));
  // Secondary captures and reports (OT, SR, PR, KO) ride along with a study: prefer the imaging one.
  const imaging = headers.map((h) => h.modality).filter((m) => m && !['SR', 'PR', 'KO', 'OT', 'DOC'].includes(m));
  const modalities = distinct(headers.map((h) => h.modality));
  const prefill: Partial<StudyMetadata> = {};
  const name = mostCommon(headers.map((h) => personName(h.patientName)));
  if (name) prefill.patient_name = name;
  const id = mostCommon(headers.map((h) => h.patientId));
  if (id) prefill.patient_id = id;
  const date = mostCommon(headers.map((h) => dicomDate(h.studyDate)));
  if (date) prefill.study_date = date;
  const modality = mostCommon(imaging.length > 0 ? imaging : headers.map((h) => h.modality));
  if (modality) prefill.modality = modality;
  const description = mostCommon(headers.map((h) => h.studyDescription));
  if (description) prefill.study_description = description;
  return {
    prefill,
    patients,
    studies,
    modalities,
    mixedPatients: patients.length > 1,
    mixedStudies: studies.length > 1,
    dicomCount: dicom.length,
    dicomBytes: dicom.reduce((sum, f) => sum + f.file.size, 0),
    leftOut: files.flatMap((f) => (f.kind === 'other' ? [{ name: f.name, reason: f.reason }] : [])),
  };
}
