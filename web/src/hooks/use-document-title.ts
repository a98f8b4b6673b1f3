import { useEffect } from 'react';

/** Each screen names itself, so screen-reader users know where a navigation landed. */
export function useDocumentTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · RelayPACS`;
  }, [title]);
}
