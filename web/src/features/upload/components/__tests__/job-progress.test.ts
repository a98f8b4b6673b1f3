import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';

import type { EngineClient } from '../../engine/client';
import type { JobState, JobView } from '../../engine/types';
import { JobProgress } from '../job-progress';

function jobIn(state: JobState): JobView {
  return {
    id: 'j1',
    createdAt: 0,
    state,
    study: { patient_name: 'DOE^JANE', study_date: '2026-01-02', modality: 'CT', service_level: 'routine' },
    files: [{ index: 0, name: 'a.dcm', size: 10 }],
    totalBytes: 10,
    forceUpload: false,
    serverId: 'u1',
    progress: null,
  };
}

/** The buttons under the progress bar (the closed dialog's own buttons are not on screen). */
function buttons(state: JobState): string {
  const client = { send: () => undefined } as unknown as EngineClient;
  const html = renderToStaticMarkup(createElement(JobProgress, { job: jobIn(state), client }));
  return /<div class="actions">(.*?)<\/div>/.exec(html)?.[1] ?? '';
}

describe('the Cancel upload button', () => {
  it('is offered while the study is still being sent', () => {
    for (const state of ['waiting', 'uploading', 'paused'] as const) expect(buttons(state)).toContain('Cancel upload');
  });

  it('is gone once completion is asked for: the gateway may already have the study', () => {
    expect(buttons('completing')).toContain('Pause');
    expect(buttons('completing')).not.toContain('Cancel upload');
  });
});
