import { useEffect, useMemo, useState } from 'react';
import { useSearchParams } from 'react-router';

import { Alert } from '@/components/alert';
import { useDocumentTitle } from '@/hooks/use-document-title';
import { saveFile } from '@/lib/download';
import { toUserFacingError } from '@/lib/problem';

import { fetchCsv, fetchSummary, fetchTrends, fetchUsers, type Summary, type Trends, type UserChoice } from '../api/analytics';
import { SERVICE_LEVEL_LABELS } from '../lib/figures';
import { fromSearch, PERIODS, toSearch, type DashboardFilters } from '../lib/period';

import { DailyVolumeChart, ModalityChart, ModalityTrendChart, OutcomeChart, ServiceLevelChart } from './charts';
import { ChartsSkeleton, StatCards, StatCardsSkeleton } from './stat-cards';

const COMMON_MODALITIES = ['CR', 'CT', 'DX', 'MG', 'MR', 'NM', 'OT', 'PT', 'RF', 'US', 'XA'];

interface Figures {
  key: string;
  summary: Summary;
  trends: Trends;
}

/** Upload figures for a period: the user's own, or (admins) anyone's, with filters and CSV. */
export function DashboardPage({ viewer, isAdmin }: { viewer: string; isAdmin: boolean }) {
  useDocumentTitle('Dashboard');
  const [search, setSearch] = useSearchParams();
  const filters = useMemo(() => fromSearch(search), [search]);
  const key = toSearch(filters, isAdmin).toString();
  const [figures, setFigures] = useState<Figures | null>(null);
  const [error, setError] = useState<{ key: string; message: string } | null>(null);
  const [users, setUsers] = useState<UserChoice[]>([]);
  const [seenModalities, setSeenModalities] = useState<string[]>([]);
  const [exporting, setExporting] = useState(false);
  const [exportError, setExportError] = useState<string | null>(null);

  useEffect(() => {
    let current = true;
    Promise.all([fetchSummary(viewer, filters, isAdmin), fetchTrends(viewer, filters, isAdmin)])
      .then(([summary, trends]) => {
        if (!current) return;
        setFigures({ key, summary, trends });
        setSeenModalities((seen) => [...new Set([...seen, ...summary.modalities.map((m) => m.modality)])]);
      })
      .catch((caught: unknown) => {
        if (current) setError({ key, message: toUserFacingError(caught).message });
      });
    return () => {
      current = false;
    };
  }, [viewer, filters, isAdmin, key]);

  useEffect(() => {
    if (!isAdmin) return;
    fetchUsers()
      .then(setUsers)
      .catch(() => setUsers([])); // the filter offers "All users" only
  }, [isAdmin]);

  const loaded = figures?.key === key ? figures : null;
  const failed = error?.key === key ? error.message : null;
  const period = PERIODS.find((p) => p.value === filters.period) ?? PERIODS[2];
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

      {failed ? <Alert>{failed}</Alert> : null}

      <p className="visually-hidden" role="status">
        {loaded ? `Figures for ${period?.long ?? ''} shown.` : failed ? '' : 'Loading the figures…'}
      </p>
      <div aria-busy={loaded ? 'false' : 'true'} data-testid="dashboard-figures" data-loaded={loaded ? 'true' : 'false'}>
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
        ) : failed ? null : (
          <>
            <StatCardsSkeleton />
            <ChartsSkeleton />
          </>
        )}
      </div>
    </section>
  );
}
