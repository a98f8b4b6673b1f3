import {
  Area,
  AreaChart,
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Pie,
  PieChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';

import type { Summary, TrendDay } from '../api/analytics';
import { formatCount, formatGigabytes, SERVICE_LEVEL_LABELS, toMegabytes } from '../lib/figures';
import { fillDays, modalitySeries, shortDate } from '../lib/series';

import { ChartFigure } from './chart-figure';

// Distinguishable colours with at least 3:1 contrast against the white card.
const PALETTE = ['#0b5cad', '#b35c00', '#1a7f37', '#8250df', '#b42318', '#006b75', '#6e5494', '#7d4e00'];
const DELIVERED = '#1a7f37';
const FAILED = '#b42318';
const HEIGHT = 240;

function colour(index: number): string {
  return PALETTE[index % PALETTE.length] ?? '#0b5cad';
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

export function ModalityChart({ summary }: { summary: Summary }) {
  const data = summary.modalities.map((m, i) => ({ ...m, fill: colour(i) }));
  const top = data[0];
  return (
    <ChartFigure
      testId="chart-modalities"
      title="Modality distribution"
      summary={
        top
          ? `${plural(data.length, 'modality', 'modalities')}; most uploads: ${top.modality} (${formatCount(top.count)}).`
          : 'No uploads in this period.'
      }
      table={{
        columns: ['Modality', 'Uploads', 'Volume'],
        rows: data.map((m) => [m.modality, m.count, formatGigabytes(m.bytes)]),
      }}
    >
      <ResponsiveContainer width="100%" height={HEIGHT}>
        <PieChart accessibilityLayer={false}>
          <Pie data={data} dataKey="count" nameKey="modality" innerRadius="45%" outerRadius="80%" isAnimationActive={false} label rootTabIndex={-1} />
          <Tooltip />
          <Legend />
        </PieChart>
      </ResponsiveContainer>
    </ChartFigure>
  );
}

export function ServiceLevelChart({ summary }: { summary: Summary }) {
  const data = summary.service_levels
    .filter((s) => s.count > 0)
    .map((s) => ({ level: SERVICE_LEVEL_LABELS[s.service_level] ?? s.service_level, uploads: s.count, delivered: s.delivered }));
  return (
    <ChartFigure
      testId="chart-service-levels"
      title="Service levels"
      summary={data.map((d) => `${d.level}: ${formatCount(d.uploads)} (${formatCount(d.delivered)} delivered)`).join('; ') || 'No uploads in this period.'}
      table={{ columns: ['Service level', 'Uploads', 'Delivered'], rows: data.map((d) => [d.level, d.uploads, d.delivered]) }}
    >
      <ResponsiveContainer width="100%" height={HEIGHT}>
        <BarChart data={data} accessibilityLayer={false} margin={{ left: -16, right: 8 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="level" />
          <YAxis allowDecimals={false} />
          <Tooltip />
          <Legend />
          <Bar dataKey="uploads" name="Uploads" fill="#0b5cad" isAnimationActive={false} />
          <Bar dataKey="delivered" name="Delivered" fill={DELIVERED} isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </ChartFigure>
  );
}

function busiest(days: TrendDay[]): TrendDay | undefined {
  return days.reduce<TrendDay | undefined>((best, d) => (!best || d.bytes > best.bytes ? d : best), undefined);
}

export function DailyVolumeChart({ days }: { days: TrendDay[] }) {
  const filled = fillDays(days);
  const data = filled.map((d) => ({ date: d.date, label: shortDate(d.date), megabytes: toMegabytes(d.bytes), uploads: d.uploads }));
  const total = filled.reduce((sum, d) => sum + d.bytes, 0);
  const peak = busiest(filled);
  const active = filled.filter((d) => d.uploads > 0);
  return (
    <ChartFigure
      testId="chart-daily-volume"
      title="Daily volume"
      summary={
        peak && total > 0
          ? `${formatGigabytes(total)} over ${plural(filled.length, 'day')}; busiest day ${peak.date} (${formatGigabytes(peak.bytes)}).`
          : 'No uploads in this period.'
      }
      table={{ columns: ['Date', 'Uploads', 'Volume (MB)'], rows: active.map((d) => [d.date, d.uploads, toMegabytes(d.bytes)]) }}
    >
      <ResponsiveContainer width="100%" height={HEIGHT}>
        <BarChart data={data} accessibilityLayer={false} margin={{ left: -8, right: 8 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="label" minTickGap={16} />
          <YAxis unit=" MB" width={72} />
          <Tooltip />
          <Bar dataKey="megabytes" name="Volume (MB)" fill="#0b5cad" isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </ChartFigure>
  );
}

export function OutcomeChart({ days }: { days: TrendDay[] }) {
  const filled = fillDays(days);
  const data = filled.map((d) => ({ label: shortDate(d.date), delivered: d.delivered, failed: d.failed }));
  const delivered = filled.reduce((sum, d) => sum + d.delivered, 0);
  const failed = filled.reduce((sum, d) => sum + d.failed, 0);
  const active = filled.filter((d) => d.delivered + d.failed > 0);
  return (
    <ChartFigure
      testId="chart-outcomes"
      title="Delivered vs failed"
      summary={delivered + failed > 0 ? `${formatCount(delivered)} delivered, ${formatCount(failed)} failed.` : 'No finished uploads in this period.'}
      table={{ columns: ['Date', 'Delivered', 'Failed'], rows: active.map((d) => [d.date, d.delivered, d.failed]) }}
    >
      <ResponsiveContainer width="100%" height={HEIGHT}>
        <BarChart data={data} accessibilityLayer={false} margin={{ left: -16, right: 8 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="label" minTickGap={16} />
          <YAxis allowDecimals={false} />
          <Tooltip />
          <Legend />
          <Bar dataKey="delivered" name="Delivered" stackId="outcome" fill={DELIVERED} isAnimationActive={false} />
          <Bar dataKey="failed" name="Failed" stackId="outcome" fill={FAILED} isAnimationActive={false} />
        </BarChart>
      </ResponsiveContainer>
    </ChartFigure>
  );
}

export function ModalityTrendChart({ days }: { days: TrendDay[] }) {
  const { modalities, rows } = modalitySeries(days);
  const data = rows.map((row) => ({ ...row, label: shortDate(row.date) }));
  const active = rows.filter((row) => modalities.some((m) => Number(row[m]) > 0));
  return (
    <ChartFigure
      testId="chart-modality-trend"
      title="Modalities over time"
      summary={modalities.length ? `Daily uploads of ${modalities.join(', ')}.` : 'No uploads in this period.'}
      table={{ columns: ['Date', ...modalities], rows: active.map((row) => [row.date, ...modalities.map((m) => Number(row[m]))]) }}
    >
      <ResponsiveContainer width="100%" height={HEIGHT}>
        <AreaChart data={data} accessibilityLayer={false} margin={{ left: -16, right: 8 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="label" minTickGap={16} />
          <YAxis allowDecimals={false} />
          <Tooltip />
          <Legend />
          {modalities.map((m, i) => (
            <Area key={m} type="monotone" dataKey={m} stackId="modality" stroke={colour(i)} fill={colour(i)} fillOpacity={0.35} isAnimationActive={false} />
          ))}
        </AreaChart>
      </ResponsiveContainer>
    </ChartFigure>
  );
}
