import { useEffect, useRef, useState, type SyntheticEvent } from 'react';
import { useNavigate } from 'react-router';

import { Alert } from '@/components/alert';
import { Dialog } from '@/components/dialog';
import { ProgressBar } from '@/components/progress-bar';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { useNetworkStatus } from '@/hooks/use-network-status';
import { formatBytes } from '@/lib/format';
import { toUserFacingError } from '@/lib/problem';
import { requestPersistentStorage } from '@/lib/storage';

import { getPreferences, type Preferences } from '../api/uploads';
import { inspectFiles, type Inspected } from '../dicom/read-headers';
import { checkStudy, type StudyCheck } from '../dicom/study-check';
import type { ServiceLevel, UploadJob } from '../engine/types';
import { engine, jobStore, requestBackgroundSync } from '../lib/engine-instance';
import { focusField } from '../lib/focus-field';
import { serviceLevelOf } from '../lib/service-level';
import { expandZip, isZip } from '../lib/zip';

import { FilePicker, type PickedFile } from './file-picker';
import { firstInvalidField, stillFromHeaders, StudyForm, validateStudy, type StudyDraft } from './study-form';

type Step = { kind: 'pick' } | { kind: 'reading'; done: number; total: number } | { kind: 'review' };

const EMPTY_STUDY: StudyDraft = {
  patient_name: '',
  patient_id: '',
  study_date: '',
  modality: '',
  service_level: 'routine',
  study_description: '',
  clinical_history: '',
};

function today(): string {
  const now = new Date();
  return new Date(now.getTime() - now.getTimezoneOffset() * 60_000).toISOString().slice(0, 10);
}

/** Names the gateway accepts: relative, at most 255 characters (keep the informative end). */
function displayName(name: string): string {
  const cleaned = name.replace(/\\/g, '/').replace(/^\/+/, '');
  return cleaned.length <= 255 ? cleaned : cleaned.slice(cleaned.length - 255);
}

export function NewUploadPage() {
  useDocumentTitle('New upload');
  const navigate = useNavigate();
  const network = useNetworkStatus();
  const [step, setStep] = useState<Step>({ kind: 'pick' });
  const [toSend, setToSend] = useState<PickedFile[]>([]);
  const [check, setCheck] = useState<StudyCheck | null>(null);
  const [draft, setDraft] = useState<StudyDraft>(EMPTY_STUDY);
  /** the level the user picked, if they did: no default (arriving late) or prefill replaces it */
  const [chosenLevel, setChosenLevel] = useState<ServiceLevel | null>(null);
  const [fromHeaders, setFromHeaders] = useState<ReadonlySet<string>>(new Set());
  const [preferences, setPreferences] = useState<Preferences | null>(null);
  const [submitted, setSubmitted] = useState(false);
  const [mixedAccepted, setMixedAccepted] = useState(false);
  const [offlineWarning, setOfflineWarning] = useState(false);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);
  const formRef = useRef<HTMLFormElement>(null);

  useEffect(() => {
    getPreferences()
      .then((prefs) => {
        setPreferences(prefs);
      })
      .catch(() => undefined); // offline: routine until the preference can be read
  }, []);

  async function pick(chosen: PickedFile[]): Promise<void> {
    // Folder listings come in no particular order: IM2 before IM10, as a person reads them.
    const picked = [...chosen].sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    setError(null);
    setStep({ kind: 'reading', done: 0, total: picked.length });
    try {
      const sendable: PickedFile[] = [];
      const inspectable: PickedFile[] = [];
      const insideZips = new Set<File>();
      for (const entry of picked) {
        if (isZip(entry.file)) {
          // The ZIP itself travels (compressed, fewer requests); its entries are checked here.
          sendable.push(entry);
          for (const inner of await expandZip(entry.file, entry.name)) {
            insideZips.add(inner.file);
            inspectable.push(inner);
          }
        } else {
          inspectable.push(entry);
        }
      }
      setStep({ kind: 'reading', done: 0, total: inspectable.length });
      const inspected: Inspected[] = await inspectFiles(inspectable, (done) => setStep({ kind: 'reading', done, total: inspectable.length }));
      for (const item of inspected) {
        if (item.kind === 'dicom' && !insideZips.has(item.file)) sendable.push({ file: item.file, name: item.name });
      }
      const result = checkStudy(inspected);
      setCheck(result);
      setToSend(sendable);
      setFromHeaders(new Set(Object.keys(result.prefill)));
      setDraft((current) => ({ ...current, ...result.prefill }));
      setMixedAccepted(false);
      setStep({ kind: 'review' });
      setTimeout(() => headingRef.current?.focus(), 0);
    } catch (caught) {
      setError(caught instanceof Error ? `The files could not be read: ${caught.message}` : 'The files could not be read.');
      setStep({ kind: 'pick' });
    }
  }

  const study: StudyDraft = { ...draft, service_level: serviceLevelOf(chosenLevel, preferences?.default_service_level) };
  const errors = submitted ? validateStudy(study, today()) : {};
  const mixed = (check?.mixedPatients ?? false) || (check?.mixedStudies ?? false);

  function submit(event: SyntheticEvent): void {
    event.preventDefault();
    setSubmitted(true);
    // The first field to correct gets the focus, so its error is read out and is on screen.
    const invalid = firstInvalidField(validateStudy(study, today()));
    if (invalid) {
      setTimeout(() => focusField(formRef.current, invalid), 0);
      return;
    }
    if (toSend.length === 0) return;
    if (mixed && !mixedAccepted) {
      setTimeout(() => focusField(formRef.current, 'mixed-confirm'), 0);
      return;
    }
    if (network === 'offline') {
      setOfflineWarning(true);
      return;
    }
    void queue();
  }

  async function queue(): Promise<void> {
    setOfflineWarning(false);
    setSaving(true);
    setError(null);
    try {
      void requestPersistentStorage();
      const id = crypto.randomUUID();
      const files = toSend.map((entry, index) => ({ index, name: displayName(entry.name), size: entry.file.size }));
      const clean = Object.fromEntries(Object.entries(study).map(([k, v]) => [k, typeof v === 'string' ? v.trim() : v])) as StudyDraft;
      const job: UploadJob = {
        id,
        createdAt: Date.now(),
        state: 'waiting',
        study: { ...clean, modality: clean.modality.toUpperCase() },
        files,
        totalBytes: files.reduce((sum, f) => sum + f.size, 0),
        ...(preferences ? { requestedChunkSize: preferences.chunk_size } : {}),
        // The gateway applies the user's duplicate-warning preference itself.
        forceUpload: false,
      };
      await jobStore.addJob(job, toSend.map((entry) => entry.file));
      engine().send({ type: 'enqueue', jobId: id });
      if (!navigator.onLine) void requestBackgroundSync();
      void navigate(`/uploads/${id}`);
    } catch (caught) {
      const failure = toUserFacingError(caught);
      setError(
        caught instanceof DOMException && caught.name === 'QuotaExceededError'
          ? 'This device has no room to keep the study while it uploads. Free some space and try again.'
          : failure.message,
      );
      setSaving(false);
    }
  }

  return (
    <section aria-labelledby="new-upload-title">
      <h1 id="new-upload-title">New upload</h1>
      {error ? <Alert>{error}</Alert> : null}
      {step.kind === 'pick' ? <FilePicker onPick={(files) => void pick(files)} /> : null}
      {step.kind === 'reading' ? (
        <div className="card" role="status">
          <p>
            Reading DICOM headers… {step.done} of {step.total}
          </p>
          <ProgressBar value={step.total ? step.done / step.total : 0} label="Reading DICOM headers" />
        </div>
      ) : null}
      {step.kind === 'review' && check ? (
        <form ref={formRef} onSubmit={submit} noValidate>
          <div className="card">
            <h2 ref={headingRef} tabIndex={-1}>
              {check.dicomCount} DICOM {check.dicomCount === 1 ? 'file' : 'files'} · {formatBytes(toSend.reduce((n, e) => n + e.file.size, 0))}
            </h2>
            {check.modalities.length > 0 ? <p>Modalities in the files: {check.modalities.join(', ')}</p> : null}
            {check.dicomCount === 0 ? <Alert>None of the chosen files is a DICOM file. Choose the study's images.</Alert> : null}
            {mixed ? (
              <Alert tone="warning">
                <p>
                  <strong>These files are not all from one {check.mixedPatients ? 'patient' : 'study'}.</strong>
                </p>
                {check.mixedPatients ? <p>Patients: {check.patients.join('; ')}</p> : null}
                {check.mixedStudies ? <p>{check.studies.length} different studies.</p> : null}
                <label className="choice">
                  <input
                    type="checkbox"
                    name="mixed-confirm"
                    checked={mixedAccepted}
                    aria-invalid={submitted && !mixedAccepted ? true : undefined}
                    aria-describedby={submitted && !mixedAccepted ? 'mixed-confirm-error' : undefined}
                    onChange={(e) => setMixedAccepted(e.target.checked)}
                  />
                  Send them together anyway
                </label>
                {submitted && !mixedAccepted ? (
                  <p id="mixed-confirm-error" className="field__error">
                    Confirm, or choose the files again.
                  </p>
                ) : null}
              </Alert>
            ) : null}
            {check.leftOut.length > 0 ? (
              <details className="left-out">
                <summary>
                  {check.leftOut.length} {check.leftOut.length === 1 ? 'file is' : 'files are'} not DICOM and will not be sent
                </summary>
                <ul>
                  {check.leftOut.slice(0, 200).map((item) => (
                    <li key={item.name}>
                      {item.name} — {item.reason}
                    </li>
                  ))}
                </ul>
              </details>
            ) : null}
            <button type="button" className="button button--ghost" onClick={() => setStep({ kind: 'pick' })}>
              Choose other files
            </button>
          </div>
          <div className="card">
            <h2>Study</h2>
            <StudyForm
              study={study}
              errors={errors}
              onChange={(next) => {
                setFromHeaders((kept) => stillFromHeaders(kept, study, next));
                if (next.service_level !== study.service_level) setChosenLevel(next.service_level);
                setDraft(next);
              }}
              fromHeaders={fromHeaders}
            />
          </div>
          {network === 'offline' ? (
            <Alert tone="warning">You are offline. The study will be kept on this device and sent when the network returns.</Alert>
          ) : null}
          <button type="submit" className="button button--primary button--block" disabled={saving || check.dicomCount === 0}>
            {saving ? 'Keeping the files on this device…' : 'Send study'}
          </button>
        </form>
      ) : null}
      <Dialog
        open={offlineWarning}
        title="You are offline"
        onClose={() => setOfflineWarning(false)}
        actions={
          <>
            <button type="button" className="button button--primary" onClick={() => void queue()}>
              Keep it and send later
            </button>
            <button type="button" className="button" onClick={() => setOfflineWarning(false)}>
              Not now
            </button>
          </>
        }
      >
        <p>The study will be stored on this device and sent automatically as soon as the network is back.</p>
      </Dialog>
    </section>
  );
}
