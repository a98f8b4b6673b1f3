import { formatBytes } from '@/lib/format';

import { SERVICE_LEVELS } from './study-form';

export interface StudySummaryProps {
  patientName: string;
  modality: string;
  studyDate: string;
  serviceLevel: string;
  description?: string | null;
  /** what was sent, when known */
  files?: { count: number; bytes: number } | null;
}

/** Who and what a study is: the lines a clinician recognises it by. */
export function StudySummary({ patientName, modality, studyDate, serviceLevel, description, files }: StudySummaryProps) {
  const level = SERVICE_LEVELS.find((l) => l.value === serviceLevel);
  return (
    <div className="study-header" data-testid="study-summary">
      <p className="study-header__patient">{patientName.replace(/\^/g, ' ')}</p>
      <p className="muted">
        {modality} · {studyDate}
        {level ? (
          <>
            {' '}
            · <span className={`badge badge--${level.value}`}>{level.label}</span>
          </>
        ) : null}
        {files ? ` · ${files.count} ${files.count === 1 ? 'file' : 'files'}, ${formatBytes(files.bytes)}` : null}
      </p>
      {description ? <p>{description}</p> : null}
    </div>
  );
}
