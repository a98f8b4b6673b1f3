import { useId, type ReactNode } from 'react';

export interface DataTable {
  columns: string[];
  rows: (string | number)[][];
}

/**
 * A chart with its text equivalent: the caption says what it shows and sums it up, the drawing is
 * hidden from assistive technology, and a table (visually hidden) holds every value it draws.
 */
export function ChartFigure({ title, summary, table, children, testId }: {
  title: string;
  summary: string;
  table: DataTable;
  children: ReactNode;
  testId?: string;
}) {
  const id = useId();
  return (
    <figure className="chart card" aria-labelledby={`${id}-title`} aria-describedby={`${id}-summary`} data-testid={testId}>
      <figcaption>
        <h2 id={`${id}-title`} className="chart__title">
          {title}
        </h2>
        <p id={`${id}-summary`} className="chart__summary muted">
          {summary}
        </p>
      </figcaption>
      {table.rows.length === 0 ? (
        <p className="chart__empty">No uploads in this period.</p>
      ) : (
        <>
          <div className="chart__plot" aria-hidden="true">
            {children}
          </div>
          {/* A table cannot be narrower than its content: the wrapper clips it. */}
          <div className="visually-hidden">
          <table>
            <caption>{title}</caption>
            <thead>
              <tr>
                {table.columns.map((column) => (
                  <th key={column} scope="col">
                    {column}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {table.rows.map((row) => (
                <tr key={String(row[0])}>
                  {row.map((cell, i) =>
                    i === 0 ? (
                      <th key={i} scope="row">
                        {cell}
                      </th>
                    ) : (
                      <td key={i}>{cell}</td>
                    ),
                  )}
                </tr>
              ))}
            </tbody>
          </table>
          </div>
        </>
      )}
    </figure>
  );
}
