import { useId, type ReactNode } from 'react';

/**
 * A data table that scrolls sideways inside its own box on narrow screens (never the page), and
 * whose box can take focus so keyboard users can scroll it too.
 */
export function TableRegion({ caption, children, testId }: { caption: ReactNode; children: ReactNode; testId?: string }) {
  const captionId = useId();
  return (
    <div className="admin-table-scroll" role="region" aria-labelledby={captionId} tabIndex={0}>
      <table className="admin-table" data-testid={testId}>
        <caption id={captionId}>{caption}</caption>
        {children}
      </table>
    </div>
  );
}
