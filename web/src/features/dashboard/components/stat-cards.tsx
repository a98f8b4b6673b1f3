import type { Summary } from '../api/analytics';
import { formatCount, formatGigabytes, formatPercent, formatSeconds } from '../lib/figures';

function Card({ label, value, detail, testId }: { label: string; value: string; detail: string; testId: string }) {
  return (
    <div className="stat">
      <dt className="stat__label">{label}</dt>
      <dd className="stat__value" data-testid={testId}>
        {value}
      </dd>
      <dd className="stat__detail muted">{detail}</dd>
    </div>
  );
}

export function StatCards({ summary }: { summary: Summary }) {
  const delivered = summary.outcomes.delivered ?? 0;
  const ttp = summary.time_to_pacs;
  return (
    <dl className="stats" data-testid="stat-cards">
      <Card label="Uploads" value={formatCount(summary.uploads.count)} detail={`${formatCount(summary.finished)} finished`} testId="card-uploads" />
      <Card label="Volume" value={formatGigabytes(summary.uploads.bytes)} detail={`${formatCount(summary.uploads.bytes)} bytes`} testId="card-volume" />
      <Card
        label="Success rate"
        value={formatPercent(summary.success_rate)}
        detail={summary.finished ? `${formatCount(delivered)} of ${formatCount(summary.finished)} delivered` : 'None finished yet'}
        testId="card-success"
      />
      <div className="stat">
        <dt className="stat__label">Time to PACS, median</dt>
        <dd className="stat__value" data-testid="card-ttp-median">
          {formatSeconds(ttp.median_seconds)}
        </dd>
        <dd className="stat__detail muted">
          P95 <span data-testid="card-ttp-p95">{formatSeconds(ttp.p95_seconds)}</span> · {formatCount(ttp.count)} delivered
        </dd>
      </div>
    </dl>
  );
}

export function StatCardsSkeleton() {
  return (
    <div className="stats" aria-hidden="true" data-testid="dashboard-skeleton">
      {['Uploads', 'Volume', 'Success rate', 'Time to PACS, median'].map((label) => (
        <div key={label} className="stat">
          <span className="stat__label">{label}</span>
          <span className="skeleton skeleton--value" />
          <span className="skeleton skeleton--line" />
        </div>
      ))}
    </div>
  );
}

export function ChartsSkeleton() {
  return (
    <div className="charts" aria-hidden="true">
      {[1, 2, 3, 4].map((n) => (
        <div key={n} className="card chart">
          <span className="skeleton skeleton--line" />
          <span className="skeleton skeleton--plot" />
        </div>
      ))}
    </div>
  );
}
