import { Link } from 'react-router';

import { useDocumentTitle } from '@/hooks/use-document-title';

/** What anyone but an administrator sees on an admin address. */
export function NotAllowed({ role }: { role: string | null }) {
  useDocumentTitle('Not allowed');
  return (
    <section className="card" aria-labelledby="not-allowed-title" data-testid="not-allowed">
      <h1 id="not-allowed-title">Not allowed</h1>
      <p>
        This area is for administrators. {role ? `Your account is a ${role} account, so it cannot open it.` : null} Ask an
        administrator if you need something changed.
      </p>
      <p>
        <Link to="/">Go to the start page</Link>
      </p>
    </section>
  );
}
