import { useCallback, useEffect, useMemo, useState } from 'react';
import { useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { saveFile } from '@/lib/download';
import { toUserFacingError } from '@/lib/problem';

import { fetchCsv, fetchUsers, type UserChoice } from '../api/analytics';
import { useFigures, type Figures } from '../hooks/use-figures';
import { waitNote } from '../lib/countdown';
import { SERVICE_LEVEL_LABELS } from '../lib/figures';
import { fromSearch, PERIODS, toSearch, type DashboardFilters } from '../lib/period';

import { DailyVolumeChart, ModalityChart, ModalityTrendChart, OutcomeChart, ServiceLevelChart } from './charts';
import { ChartsSkeleton, StatCards, StatCardsSkeleton } from './stat-cards';

const COMMON_MODALITIES = ['CR', 'CT', 'DX', 'MG', 'MR', 'NM', 'OT', 'PT', 'RF', 'US', 'XA'];

/** Upload figures for a period: the user's own, or (admins) anyone's, with filters and CSV. */
export function DashboardPage({ viewer, isAdmin }: { viewer: string; isAdmin: boolean }) {
  useDocumentTitle('Dashboard');
  const [search, setSearch] = useSearchParams();
  const filters = useMemo(() => fromSearch(search), [search]);
  const key = toSearch(filters, isAdmin).toString();
  const [users, setUsers] = useState<UserChoice[]>([]);
  const [seenModalities, setSeenModalities] = useState<string[]>([]);
  const [exporting, setExporting] = useState(false);
  const [exportError, setExportError] = useState<string | null>(null);

  const remember = useCallback((figures: Figures) => {
    setSeenModalities((seen) => [...new Set([...seen, ...figures.summary.modalities.map((m) => m.modality)])]);
  }, []);
  const { loaded: current, previous, error: failed, waitSeconds } = useFigures(viewer, filters, isAdmin, key, remember);

  useEffect(() => {
    if (!isAdmin) return;
    fetchUsers()
      .then(setUsers)
      .catch(() => setUsers([])); // the filter offers "All users" only
  }, [isAdmin]);

  const waiting = waitSeconds !== null;
  // Told to wait, the last figures stay on screen (said to be another period's) rather than none.
  const loaded = current ?? (waiting ? previous : null);
  const period = PERIODS.find((p) => p.value === filters.period) ?? PERIODS[2];
  const shownPeriod = loaded && loaded.key !== key ? PERIODS.find((p) => p.value === fromSearch(new URLSearchParams(loaded.key)).period) : null;
  const modalities = [...new Set([...COMMON_MODALITIES, ...seenModalities, ...(filters.modality ? [filters.modality.toUpperCase()] : [])])].sort();

  function update(change: Partial<DashboardFilters>): void {
    setSearch(toSearch({ ...filters, ...change }, isAdmin), { replace: true });
  }

  async function exportCsv(): Promise<void> {
    setExporting(true);
    setExportError(null);
    try {
      const { blob, filename } = await fetchCsv(filters);
      saveFile(blob, filename);
    } catch (caught) {
      setExportError(toUserFacingError(caught).message);
    } finally {
      setExporting(false);
    }
  }

  return (
    <section aria-labelledby="dashboard-title" className="dashboard">
      <div className="dashboard__head">
        <h1 id="dashboard-title">Dashboard</h1>
        <p className="muted">
          {isAdmin ? 'Uploads of every user' : 'Your uploads'}, {period?.long ?? ''}.
        </p>
      </div>

      <fieldset className="periods">
        <legend className="visually-hidden">Period</legend>
        {PERIODS.map((p) => (
          <label key={p.value} className="periods__option">
            <input type="radio" name="period" value={p.value} checked={filters.period === p.value} onChange={() => update({ period: p.value })} aria-label={`${p.label}: ${p.long}`} />
            <span aria-hidden="true">{p.label}</span>
          </label>
        ))}
      </fieldset>

      {isAdmin ? (
        <div className="card dashboard__filters" role="group" aria-labelledby="dashboard-filters-title">
          <h2 id="dashboard-filters-title" className="visually-hidden">
            Filters
          </h2>
          <div className="field">
            <label htmlFor="filter-user">User</label>
            <select id="filter-user" value={filters.userId} onChange={(e) => update({ userId: e.target.value })}>
              <option value="">All users</option>
              {users.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.username}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="filter-modality">Modality</label>
            <select id="filter-modality" value={filters.modality.toUpperCase()} onChange={(e) => update({ modality: e.target.value })}>
              <option value="">All modalities</option>
              {modalities.map((m) => (
                <option key={m} value={m}>
                  {m}
                </option>
              ))}
            </select>
          </div>
          <div className="field">
            <label htmlFor="filter-level">Service level</label>
            <select id="filter-level" value={filters.serviceLevel} onChange={(e) => update({ serviceLevel: e.target.value as DashboardFilters['serviceLevel'] })}>
              <option value="">All service levels</option>
              {Object.entries(SERVICE_LEVEL_LABELS).map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </div>
          <div className="dashboard__export">
            <button type="button" className="button" onClick={() => void exportCsv()} disabled={exporting}>
              {exporting ? 'Preparing CSV…' : 'Download CSV'}
            </button>
          </div>
          {exportError ? <Alert>{exportError}</Alert> : null}
        </div>
      ) : null}

      {waiting ? (
        // Not a live region: a figure changing every second would be read out every second.
        <div className="alert alert--warning" data-testid="dashboard-wait">
          {waitNote(waitSeconds, shownPeriod ? shownPeriod.long : null)}
        </div>
      ) : failed ? (
        <Alert>{failed}</Alert>
      ) : null}

      <p className="visually-hidden" role="status">
        {waiting
          ? 'Too many dashboard requests — the figures will refresh by themselves shortly.'
          : current
            ? `Figures for ${period?.long ?? ''} shown.`
            : failed
              ? ''
              : 'Loading the figures…'}
      </p>
      <div aria-busy={current ? 'false' : 'true'} data-testid="dashboard-figures" data-loaded={current ? 'true' : 'false'}>
        {loaded ? (
          <>
            <StatCards summary={loaded.summary} />
            <div className="charts">
              <ModalityChart summary={loaded.summary} />
              <ServiceLevelChart summary={loaded.summary} />
              <DailyVolumeChart days={loaded.trends.days} />
              <OutcomeChart days={loaded.trends.days} />
              <ModalityTrendChart days={loaded.trends.days} />
            </div>
          </>
        ) : failed || waiting ? null : (
          <>
            <StatCardsSkeleton />
            <ChartsSkeleton />
          </>
        )}
      </div>
    </section>
  );
}
