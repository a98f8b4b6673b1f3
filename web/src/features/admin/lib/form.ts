/** A text field of a submitted form ('' when absent; a file input is never read as text). */
export function formText(data: FormData, key: string): string {
  const value = data.get(key);
  return typeof value === 'string' ? value : '';
}
