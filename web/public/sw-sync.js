// Background Sync: the browser wakes the service worker when the network returns; open pages
// are told to resume their queued uploads (the upload engine itself lives in the page's worker).
self.addEventListener('sync', (event) => {
  if (event.tag !== 'relaypacs-uploads') return;
  event.waitUntil(
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((clients) => {
      for (const client of clients) client.postMessage({ type: 'relaypacs-resume-uploads' });
    }),
  );
});
