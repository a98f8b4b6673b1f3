import { useEffect, useState, type SyntheticEvent } from 'react';

import { Alert } from '@/components/alert';
import { toUserFacingError } from '@/lib/problem';

import { getPreferences, savePreferences, type Preferences } from '../api/uploads';

import { SERVICE_LEVELS } from './study-form';

const CHUNK_SIZES = [512 * 1024, 1024 * 1024, 2 * 1024 * 1024, 5 * 1024 * 1024, 10 * 1024 * 1024];

export function PreferencesPanel() {
  const [prefs, setPrefs] = useState<Preferences | null>(null);
  const [message, setMessage] = useState<{ tone: 'success' | 'error'; text: string } | null>(null);

  useEffect(() => {
    getPreferences()
      .then(setPrefs)
      .catch((error: unknown) => setMessage({ tone: 'error', text: toUserFacingError(error).message }));
  }, []);

  async function save(event: SyntheticEvent): Promise<void> {
    event.preventDefault();
    if (!prefs) return;
    try {
      setPrefs(await savePreferences(prefs));
      setMessage({ tone: 'success', text: 'Preferences saved.' });
    } catch (error) {
      setMessage({ tone: 'error', text: toUserFacingError(error).message });
    }
  }

  return (
    <section className="card" aria-labelledby="prefs-title">
      <h2 id="prefs-title">Upload preferences</h2>
      {message ? <Alert tone={message.tone}>{message.text}</Alert> : null}
      {prefs ? (
        <form onSubmit={(e) => void save(e)}>
          <div className="field">
            <label htmlFor="pref-level">Default service level</label>
            <select id="pref-level" value={prefs.default_service_level} onChange={(e) => setPrefs({ ...prefs, default_service_level: e.target.value as Preferences['default_service_level'] })}>
              {SERVICE_LEVELS.map((level) => (
                <option key={level.value} value={level.value}>
                  {level.label}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="pref-chunk">Chunk size (advanced)</label>
            <select id="pref-chunk" aria-describedby="pref-chunk-hint" value={prefs.chunk_size} onChange={(e) => setPrefs({ ...prefs, chunk_size: Number(e.target.value) })}>
              {[...new Set([...CHUNK_SIZES, prefs.chunk_size])].sort((a, b) => a - b).map((size) => (
                <option key={size} value={size}>
                  {size >= 1024 * 1024 ? `${size / 1024 / 1024} MiB` : `${size / 1024} KiB`}
                </option>
              ))}
            </select>
            <p id="pref-chunk-hint" className="field__hint">
              Smaller chunks lose less on a link that keeps dropping; larger ones are faster on a good one.
            </p>
          </div>
          <label className="choice">
            <input type="checkbox" checked={prefs.duplicate_warnings} onChange={(e) => setPrefs({ ...prefs, duplicate_warnings: e.target.checked })} />
            Warn me before sending a study I sent recently
          </label>
          <button type="submit" className="button button--primary">
            Save preferences
          </button>
        </form>
      ) : null}
    </section>
  );
}
