import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import { parseUploadStatus } from '../../engine/protocol';
import { leftOutFiles, leftOutHeadline } from '../../lib/left-out';
import type { UploadSummary } from '../../api/uploads';
import { ServerStatusView, studyShown, type ServerStatusViewProps } from '../server-status';

/** GET /uploads/{id} as the gateway answers it (the fields that matter here). */
function answer(state: string, files: { name: string; status: string; problems?: { entry: string | null; status: string; reason: string }[] }[]) {
  return {
    upload_id: 'u-1',
    state,
    study: {
      patient_name: 'DOE^JANE',
      patient_id: 'P-1',
      study_date: '2026-03-04',
      modality: 'CT',
      service_level: 'stat',
      study_description: 'Head',
      clinical_history: null,
    },
    bytes_received: 4000,
    bytes_total: 4000,
    instance_count: 3,
    failure_reason: state === 'rejected' ? 'No valid DICOM instance in the upload' : null,
    files: files.map((file, n) => ({
      file_id: `f-${n}`,
      name: file.name,
      size: 1000,
      chunk_count: 1,
      chunks_received: 1,
      missing_chunks: [],
      status: file.status,
      sha256: null,
      problems: file.problems ?? [],
    })),
    instances: [],
    timeline: [],
  };
}

const TRUNCATED = { entry: null, status: 'invalid', reason: 'truncated or malformed: element header cut off' };
const FOUR_ONE_BAD = [
  { name: 'IM0001.dcm', status: 'valid' },
  { name: 'IM0002.dcm', status: 'valid' },
  { name: 'IM0003.dcm', status: 'invalid', problems: [TRUNCATED] },
  { name: 'IM0004.dcm', status: 'valid' },
];

function render(props: Partial<ServerStatusViewProps>): string {
  const html = renderToStaticMarkup(
    createElement(ServerStatusView, { status: null, error: null, notFound: false, offline: false, lastKnownState: null, ...props }),
  );
  // Text only, as a person reads it.
  return html.replace(/<[^>]+>/g, ' ').replace(/&#x27;/g, "'").replace(/\s+/g, ' ');
}

describe('the gateway status of each file', () => {
  it('keeps what validation made of each file, and why it could not be used', () => {
    const parsed = parseUploadStatus(answer('delivered', FOUR_ONE_BAD));
    expect(parsed.files[2]).toMatchObject({ name: 'IM0003.dcm', status: 'invalid', problems: [TRUNCATED] });
    expect(parsed.study).toMatchObject({ patient_name: 'DOE^JANE', modality: 'CT', study_date: '2026-03-04', service_level: 'stat' });
  });

  it('names a left-out ZIP entry within its archive, and ignores an index that is no image', () => {
    const parsed = parseUploadStatus(
      answer('delivered', [
        {
          name: 'study.zip',
          status: 'partial',
          problems: [
            { entry: 'DICOMDIR', status: 'skipped', reason: 'a DICOMDIR is an index, not an instance' },
            { entry: 'IM9', status: 'invalid', reason: "not DICOM: no 'DICM' preamble" },
          ],
        },
      ]),
    );
    expect(leftOutFiles(parsed.files)).toEqual([{ name: 'study.zip / IM9', reason: 'not a DICOM image' }]);
    expect(leftOutHeadline('delivered', parsed.files)).toBe('Delivered — but 1 file could not be used and was left out');
  });
});

describe('a delivered study with a bad image', () => {
  it('says how many files were delivered and which one was left out, and why', () => {
    const text = render({ status: parseUploadStatus(answer('delivered', FOUR_ONE_BAD)) });
    expect(text).toContain('Delivered to the PACS');
    expect(text).toContain('3 of 4 files delivered — 1 left out');
    expect(text).toContain('IM0003.dcm : the file is damaged or incomplete (truncated or malformed: element header cut off)');
  });

  it('says nothing of left-out files when every file was used', () => {
    const all = FOUR_ONE_BAD.map((f) => ({ name: f.name, status: 'valid' }));
    const text = render({ status: parseUploadStatus(answer('delivered', all)) });
    expect(text).not.toContain('left out');
    expect(text).not.toContain('could not be used');
  });
});

describe('a rejected study', () => {
  it('lists every file with its reason', () => {
    const files = [
      { name: 'a.dcm', status: 'invalid', problems: [TRUNCATED] },
      { name: 'notes.txt', status: 'invalid', problems: [{ entry: null, status: 'invalid', reason: "not DICOM: no 'DICM' preamble" }] },
    ];
    const text = render({ status: parseUploadStatus(answer('rejected', files)) });
    expect(text).toContain('None of the 2 files could be used, so nothing was sent to the PACS');
    expect(text).toContain('a.dcm : the file is damaged or incomplete');
    expect(text).toContain('notes.txt : not a DICOM image');
  });
});

describe('an upload whose state is not known', () => {
  it('marks no step in progress while the gateway has not answered', () => {
    const text = render({});
    expect(text).toContain('Asking the gateway…');
    expect(text).not.toContain('(in progress)');
  });

  it('says it is offline and shows the last known state from the saved history, with no step in progress', () => {
    const text = render({ offline: true, lastKnownState: 'delivered' });
    expect(text).toContain('You are offline — last known: Delivered to the PACS');
    expect(text).not.toContain('(in progress)');
    expect(text).not.toContain('Asking the gateway');
  });

  it('shows only "No such upload" for an upload the gateway does not know', () => {
    const text = render({ notFound: true, error: 'No such upload' });
    expect(text).toContain('No such upload.');
    expect(text).not.toContain('Asking the gateway');
    expect(text).not.toContain('Received');
    expect(text).not.toContain('(in progress)');
  });
});

describe('an upload sent from another device', () => {
  const saved: UploadSummary = {
    upload_id: 'u-1',
    state: 'delivered',
    patient_name: 'ROE^RICHARD',
    study_date: '2026-02-01',
    modality: 'MR',
    service_level: 'routine',
    study_description: null,
    file_count: 2,
    instance_count: 2,
    bytes_total: 2048,
    bytes_received: 2048,
    created_at: '2026-02-01T10:00:00Z',
  };

  it("names the study from the gateway's answer", () => {
    const status = parseUploadStatus(answer('delivered', FOUR_ONE_BAD));
    expect(studyShown(status, saved)).toEqual({
      patientName: 'DOE^JANE',
      modality: 'CT',
      studyDate: '2026-03-04',
      serviceLevel: 'stat',
      description: 'Head',
      files: { count: 4, bytes: 4000 },
    });
  });

  it('names it from the saved history while the gateway cannot be asked', () => {
    expect(studyShown(null, saved)).toMatchObject({ patientName: 'ROE^RICHARD', modality: 'MR', serviceLevel: 'routine', files: { count: 2, bytes: 2048 } });
    expect(studyShown(null, null)).toBeNull();
  });
});

describe('a study the gateway could not deliver', () => {
  const at = '2026-03-04T10:00:00Z';
  const entries = (...states: string[]) => states.map((state) => ({ state, at, detail: null }));
  function failed(reason: string, timeline: { state: string; at: string; detail: string | null }[], instances: object[] = []) {
    const body = { ...answer('failed', FOUR_ONE_BAD), failure_reason: reason, instances, timeline: [...timeline, { state: 'failed', at, detail: reason }] };
    return render({ status: parseUploadStatus(body) });
  }
  const done = (text: string) => [...text.matchAll(/✓ ([A-Za-z ]+?) \(done\)/g)].map((m) => m[1]);

  it('says the files could not be put together when assembly failed, with only Received done', () => {
    const text = failed('stored chunk 3 does not match its checksum', entries('created', 'receiving', 'assembling'));
    expect(text).toContain('Not delivered: the gateway could not put the received files together');
    expect(text).toContain('Why: stored chunk 3 does not match its checksum');
    expect(text).not.toContain('could not be reached');
    expect(done(text)).toEqual(['Received']);
  });

  it('says the PACS refused every image when it did, forwarding done but nothing delivered', () => {
    const refused = [
      { forward_status: 'refused', forward_reason: 'duplicate', entry_name: 'IM1' },
      { forward_status: 'refused', forward_reason: 'duplicate', entry_name: 'IM2' },
    ];
    const text = failed('the PACS refused every instance (2)', entries('created', 'receiving', 'assembling', 'validated', 'queued', 'forwarding'), refused);
    expect(text).toContain('Not delivered: the PACS refused every image');
    expect(text).toContain('Why: the PACS refused every instance (2)');
    expect(text).not.toContain('could not be reached');
    expect(done(text)).toEqual(['Received', 'Validated', 'Forwarding to PACS']);
  });

  it('says sending to the PACS failed when the gateway gave up on delivery, and why', () => {
    const text = failed('not delivered within 48 h: connection refused', entries('created', 'receiving', 'assembling', 'validated', 'queued'), [
      { forward_status: 'pending' },
    ]);
    expect(text).toContain('Not delivered: sending to the PACS failed');
    expect(text).toContain('Why: not delivered within 48 h: connection refused');
    expect(done(text)).toEqual(['Received', 'Validated']);
  });
});
