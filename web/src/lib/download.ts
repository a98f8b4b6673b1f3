/** Hands bytes the app fetched (with its bearer token) to the browser as a file download. */
export function saveFile(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.rel = 'noopener';
  link.style.display = 'none';
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started from the object URL; let the browser read it before it goes.
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
