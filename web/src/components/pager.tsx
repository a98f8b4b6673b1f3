import { hasNext, hasPrevious, pageLabel } from '@/lib/paging';

/** Previous / next for an offset-paged list, with the rows shown announced politely. */
export function Pager({
  offset,
  shown,
  total,
  label,
  onPrevious,
  onNext,
  previousText = 'Previous',
  nextText = 'Next',
}: {
  offset: number;
  shown: number;
  total: number;
  label: string;
  onPrevious: () => void;
  onNext: () => void;
  /** the buttons' words, e.g. Newer / Older for a newest-first list */
  previousText?: string;
  nextText?: string;
}) {
  return (
    <nav className="admin-pager" aria-label={label}>
      <button type="button" className="button" disabled={!hasPrevious(offset)} onClick={onPrevious}>
        {previousText}
      </button>
      <span className="admin-pager__label" aria-live="polite">
        {pageLabel(offset, shown, total)}
      </span>
      <button type="button" className="button" disabled={!hasNext(offset, shown, total)} onClick={onNext}>
        {nextText}
      </button>
    </nav>
  );
}
