import { hasNext, hasPrevious, pageLabel } from '../lib/paging';

/** Previous / next for an offset-paged table, with the rows shown announced politely. */
export function Pager({
  offset,
  shown,
  total,
  label,
  onPrevious,
  onNext,
}: {
  offset: number;
  shown: number;
  total: number;
  label: string;
  onPrevious: () => void;
  onNext: () => void;
}) {
  return (
    <nav className="admin-pager" aria-label={label}>
      <button type="button" className="button" disabled={!hasPrevious(offset)} onClick={onPrevious}>
        Previous
      </button>
      <span className="admin-pager__label" aria-live="polite">
        {pageLabel(offset, shown, total)}
      </span>
      <button type="button" className="button" disabled={!hasNext(offset, shown, total)} onClick={onNext}>
        Next
      </button>
    </nav>
  );
}
