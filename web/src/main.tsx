import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

import { App } from '@/app/app';
import { catchInstallOffers } from '@/lib/install-prompt';
import { restoreTokens } from '@/lib/tokens';

import './app/styles.css';

// Before anything async: the browser's install offer can come before React has mounted.
catchInstallOffers(window);

const root = document.getElementById('root');
if (!root) throw new Error('index.html has no #root');
// The sign-in as it was last saved, even if the browser died before localStorage reached disk.
void restoreTokens().finally(() => {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
});
