/**
 * Focuses a field of a form by name and brings it to the middle of the screen: on a phone the
 * field to correct may be far above the button just tapped. Focus makes a screen reader read
 * the field with its error (tied to it by aria-describedby). Returns whether a field was found.
 */
export function focusField(form: Pick<HTMLFormElement, 'querySelector'> | null, name: string): boolean {
  const field = form?.querySelector<HTMLElement>(`[name="${name}"]`);
  if (!field) return false;
  field.focus({ preventScroll: true });
  field.scrollIntoView({ block: 'center' });
  return true;
}
