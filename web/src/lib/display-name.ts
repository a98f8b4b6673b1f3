/**
 * How the app names a person: the full name they gave, else their username. A profile cached on
 * the device before the gateway knew full names has none, hence the optional field.
 */
export function displayName(person: { username: string; full_name?: string | null }): string {
  const name = person.full_name?.trim();
  return name ? name : person.username;
}
