/**
 * Reads the study-level header fields of a DICOM Part 10 file in the browser (dicom-parser),
 * from its first bytes only: pixel data is never loaded.
 */
import { parseDicom, type DataSet } from 'dicom-parser';

export interface DicomHeader {
  patientName?: string;
  patientId?: string;
  studyDate?: string;
  modality?: string;
  studyDescription?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  sopClassUid?: string;
}

export type Inspected =
  | { kind: 'dicom'; file: File; name: string; header: DicomHeader }
  | { kind: 'other'; file: File; name: string; reason: string };

/** Enough for the header of nearly every real file; more only costs reading time. */
const HEADER_BYTES = 256 * 1024;
const MEDIA_STORAGE_DIRECTORY = '1.2.840.10008.1.3.10';

export function hasPart10Preamble(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

function read(dataSet: DataSet, tag: string): string | undefined {
  try {
    const value = dataSet.string(tag)?.trim();
    return value === '' ? undefined : value;
  } catch {
    return undefined;
  }
}

function partialDataSet(error: unknown): DataSet | null {
  if (typeof error === 'object' && error !== null && 'dataSet' in error) {
    return (error as { dataSet: DataSet }).dataSet;
  }
  return null;
}

export function parseHeader(bytes: Uint8Array): DicomHeader | null {
  let dataSet: DataSet | null;
  try {
    dataSet = parseDicom(bytes, { untilTag: 'x7fe00010' });
  } catch (error) {
    // Cut off inside the header (we read only the start): keep what was parsed.
    dataSet = partialDataSet(error);
  }
  if (!dataSet) return null;
  return {
    patientName: read(dataSet, 'x00100010'),
    patientId: read(dataSet, 'x00100020'),
    studyDate: read(dataSet, 'x00080020'),
    modality: read(dataSet, 'x00080060'),
    studyDescription: read(dataSet, 'x00081030'),
    studyInstanceUid: read(dataSet, 'x0020000d'),
    seriesInstanceUid: read(dataSet, 'x0020000e'),
    sopClassUid: read(dataSet, 'x00080016') ?? read(dataSet, 'x00020002'),
  };
}

export async function inspectFile(file: File, name: string = file.name): Promise<Inspected> {
  if (file.size === 0) return { kind: 'other', file, name, reason: 'empty file' };
  const base = name.split('/').pop() ?? name;
  if (base.startsWith('.')) return { kind: 'other', file, name, reason: 'hidden system file' };
  const bytes = new Uint8Array(await file.slice(0, HEADER_BYTES).arrayBuffer());
  if (!hasPart10Preamble(bytes)) return { kind: 'other', file, name, reason: 'not a DICOM file' };
  const header = parseHeader(bytes);
  if (!header) return { kind: 'other', file, name, reason: 'DICOM header cannot be read' };
  if (header.sopClassUid === MEDIA_STORAGE_DIRECTORY || base.toUpperCase() === 'DICOMDIR') {
    return { kind: 'other', file, name, reason: 'DICOMDIR index, not an image' };
  }
  return { kind: 'dicom', file, name, header };
}

/** Inspects many files a few at a time, reporting how far it got. */
export async function inspectFiles(
  files: { file: File; name: string }[],
  onProgress: (done: number) => void,
): Promise<Inspected[]> {
  const results: Inspected[] = new Array<Inspected>(files.length);
  let next = 0;
  let done = 0;
  const lane = async (): Promise<void> => {
    while (next < files.length) {
      const index = next;
      next += 1;
      const entry = files[index];
      if (!entry) continue;
      results[index] = await inspectFile(entry.file, entry.name);
      done += 1;
      if (done % 10 === 0 || done === files.length) onProgress(done);
    }
  };
  await Promise.all(Array.from({ length: 6 }, lane));
  return results;
}
