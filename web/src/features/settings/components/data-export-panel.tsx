import { useState } from 'react';

import { Alert } from '@/components/alert';
import { saveFile } from '@/lib/download';
import { toUserFacingError } from '@/lib/problem';

import { fetchMyData } from '../api/settings';

/** GDPR: download everything RelayPACS holds about the user, as one JSON file. */
export function DataExportPanel({ username }: { username: string }) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ tone: 'success' | 'error'; text: string } | null>(null);

  async function download(): Promise<void> {
    setBusy(true);
    setMessage(null);
    try {
      const { blob, filename } = await fetchMyData(username);
      saveFile(blob, filename);
      setMessage({ tone: 'success', text: `Saved as ${filename}.` });
    } catch (caught) {
      setMessage({ tone: 'error', text: toUserFacingError(caught).message });
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card" aria-labelledby="data-title">
      <h2 id="data-title">Your data</h2>
      <p>
        Download everything RelayPACS holds about you: your profile, preferences, sign-ins, the record of what you did, and your
        uploads.
      </p>
      {message ? <Alert tone={message.tone}>{message.text}</Alert> : null}
      <button type="button" className="button" onClick={() => void download()} disabled={busy}>
        {busy ? 'Preparing…' : 'Download my data'}
      </button>
    </section>
  );
}
