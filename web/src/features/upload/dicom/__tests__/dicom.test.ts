import { describe, expect, it } from 'vitest';

import { hasPart10Preamble, inspectFile, parseHeader, type Inspected } from '../read-headers';
import { checkStudy, dicomDate, personName } from '../study-check';

/** A minimal DICOM Part 10 file in explicit VR little endian. */
function part10(elements: [number, number, string, string][]): Uint8Array {
  const parts: number[] = [];
  const element = (group: number, el: number, vr: string, value: string): number[] => {
    const bytes = [...new TextEncoder().encode(value)];
    if (bytes.length % 2 === 1) bytes.push(vr === 'UI' ? 0 : 0x20);
    return [group & 0xff, group >> 8, el & 0xff, el >> 8, vr.charCodeAt(0), vr.charCodeAt(1), bytes.length & 0xff, bytes.length >> 8, ...bytes];
  };
  const meta = element(0x0002, 0x0010, 'UI', '1.2.840.10008.1.2.1');
  const length = meta.length;
  parts.push(...new Array<number>(128).fill(0), 0x44, 0x49, 0x43, 0x4d);
  parts.push(0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00, length & 0xff, (length >> 8) & 0xff, 0, 0, ...meta);
  for (const [group, el, vr, value] of elements) parts.push(...element(group, el, vr, value));
  return new Uint8Array(parts);
}

function ct(patient: string, study: string, id = 'PID1'): Uint8Array {
  return part10([
    [0x0008, 0x0020, 'DA', '20240131'],
    [0x0008, 0x0060, 'CS', 'CT'],
    [0x0008, 0x1030, 'LO', 'HEAD W/O'],
    [0x0010, 0x0010, 'PN', patient],
    [0x0010, 0x0020, 'LO', id],
    [0x0020, 0x000d, 'UI', study],
  ]);
}

function file(bytes: Uint8Array, name: string): File {
  return new File([bytes as Uint8Array<ArrayBuffer>], name);
}

describe('DICOM headers in the browser', () => {
  it('reads patient, date, modality, description and study UID', () => {
    const header = parseHeader(ct('DOE^JANE^^', '1.2.3'));
    expect(header).toMatchObject({
      patientName: 'DOE^JANE^^',
      patientId: 'PID1',
      studyDate: '20240131',
      modality: 'CT',
      studyDescription: 'HEAD W/O',
      studyInstanceUid: '1.2.3',
    });
  });

  it('keeps what it read when the header is cut off', () => {
    const bytes = ct('DOE^JANE', '1.2.3');
    const header = parseHeader(bytes.slice(0, bytes.length - 3));
    expect(header?.modality).toBe('CT');
  });

  it('tells DICOM from other files by the Part 10 preamble', async () => {
    expect(hasPart10Preamble(ct('A', '1'))).toBe(true);
    expect(hasPart10Preamble(new TextEncoder().encode('hello'))).toBe(false);
    expect((await inspectFile(file(new TextEncoder().encode('notes'), 'notes.txt'))).kind).toBe('other');
    expect(await inspectFile(file(new Uint8Array(), 'empty.dcm'))).toMatchObject({ kind: 'other', reason: 'empty file' });
    expect(await inspectFile(file(ct('A', '1'), '.DS_Store'))).toMatchObject({ kind: 'other', reason: 'hidden system file' });
    expect((await inspectFile(file(ct('A', '1'), 'IM0001'))).kind).toBe('dicom');
  });
});

describe('study check', () => {
  async function inspect(entries: [Uint8Array, string][]): Promise<Inspected[]> {
    return Promise.all(entries.map(([bytes, name]) => inspectFile(file(bytes, name))));
  }

  it('pre-fills the study from the files, converting DICOM dates and names', async () => {
    const check = checkStudy(await inspect([[ct('DOE^JANE^^', '1.2.3'), 'a'], [ct('DOE^JANE', '1.2.3'), 'b']]));
    expect(check.prefill).toEqual({
      patient_name: 'DOE^JANE',
      patient_id: 'PID1',
      study_date: '2024-01-31',
      modality: 'CT',
      study_description: 'HEAD W/O',
    });
    expect(check.mixedPatients).toBe(false);
    expect(check.mixedStudies).toBe(false);
    expect(check.dicomCount).toBe(2);
  });

  it('flags files of different patients or studies', async () => {
    const check = checkStudy(await inspect([[ct('DOE^JANE', '1.2.3'), 'a'], [ct('ROE^RICHARD', '1.2.4', 'PID2'), 'b']]));
    expect(check.mixedPatients).toBe(true);
    expect(check.mixedStudies).toBe(true);
    expect(check.patients).toHaveLength(2);
  });

  it('lists non-DICOM files as left out, with the reason', async () => {
    const check = checkStudy(await inspect([[ct('DOE^JANE', '1.2.3'), 'a'], [new TextEncoder().encode('x'), 'readme.txt']]));
    expect(check.leftOut).toEqual([{ name: 'readme.txt', reason: 'not a DICOM file' }]);
    expect(check.dicomCount).toBe(1);
  });

  it('converts DICOM values for the form', () => {
    expect(dicomDate('20240131')).toBe('2024-01-31');
    expect(dicomDate('2024')).toBeUndefined();
    expect(personName('DOE^JOHN^^^')).toBe('DOE^JOHN');
    expect(personName('^^')).toBeUndefined();
  });
});
