/** Offset paging shared by the admin tables and the reports list. */

export function pageLabel(offset: number, shown: number, total: number): string {
  if (total === 0 || shown === 0) return 'No results';
  return `${offset + 1}–${offset + shown} of ${total}`;
}

export function hasPrevious(offset: number): boolean {
  return offset > 0;
}

export function hasNext(offset: number, shown: number, total: number): boolean {
  return offset + shown < total;
}

export function previousOffset(offset: number, limit: number): number {
  return Math.max(0, offset - limit);
}

/** A page number from the URL (1-based, anything else is page 1) as an offset. */
export function offsetOfPage(value: string | null, limit: number): number {
  const page = Number(value);
  return Number.isInteger(page) && page > 1 ? (page - 1) * limit : 0;
}

/** The URL's page number for an offset (1-based). */
export function pageOfOffset(offset: number, limit: number): number {
  return Math.floor(offset / limit) + 1;
}
