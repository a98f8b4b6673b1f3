import { describe, expect, it } from 'vitest';

import type { Report } from '../../api/types';
import { initialForm, reportIdOf, toUpdate, validateForm } from '../form';

const report: Report = {
  id: 'r1',
  upload_id: 'u1',
  owner_id: 'o1',
  status: 'assigned',
  study: {
    patient_name: 'DOE^JANE',
    patient_id: null,
    study_date: '2026-01-02',
    modality: 'CT',
    service_level: 'routine',
    study_description: 'CT head',
    study_instance_uid: null,
  },
  uploaded_at: '2026-11-29T10:00:00Z',
  delivered_at: '2026-11-29T10:01:00Z',
  radiologist: null,
  updated_at: '2026-11-29T10:01:00Z',
  ready_at: null,
  text: null,
  message: null,
  source: null,
  has_pacs_pdf: false,
  last_synced_at: null,
  sync_error: null,
};

describe('the report editor', () => {
  it('starts an assigned report at pending', () => {
    expect(initialForm(report).status).toBe('pending');
  });

  it('asks for a message with "additional data required" and for text with "ready"', () => {
    const form = initialForm(report);
    expect(validateForm({ ...form, status: 'additional_data_required' })).toEqual({ message: 'Say what is needed from the sender.' });
    expect(validateForm({ ...form, status: 'ready' })).toEqual({ text: 'A ready report needs its text.' });
    expect(validateForm({ ...form, status: 'ready', text: 'No acute findings.' })).toEqual({});
    expect(validateForm({ ...form, radiologist: 'a\nb' }).radiologist).toBeDefined();
  });

  it('sends only what changed', () => {
    const form = { ...initialForm(report), status: 'ready' as const, text: 'Normal.', radiologist: ' Dr Who ' };
    expect(toUpdate(form, report)).toEqual({ status: 'ready', text: 'Normal.', radiologist: 'Dr Who' });
    const ready = { ...report, status: 'ready' as const, text: 'Normal.', radiologist: 'Dr Who' };
    expect(toUpdate(initialForm(ready), ready)).toEqual({});
    const asking = { ...initialForm(ready), status: 'additional_data_required' as const, message: ' Prior CT please ' };
    expect(toUpdate(asking, ready)).toEqual({ status: 'additional_data_required', message: 'Prior CT please' });
  });

  it('finds the report a live event is about', () => {
    expect(reportIdOf({ report_id: 'r1', type: 'report_ready' })).toBe('r1');
    expect(reportIdOf({ report_id: null })).toBeNull();
    expect(reportIdOf('nope')).toBeNull();
  });
});
