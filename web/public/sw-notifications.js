// A click on a system notification (Android shows them only through the service worker): close
// it, then bring the app forward on the notification's target (`data.url`, e.g. /reports/<id>).
// An app window already open is navigated and focused; with none, a new one opens.
// Kept on `self` so a test can run it with a stand-in event (a synthetic event cannot waitUntil).
self.relaypacsNotificationClick = async (event) => {
  event.notification.close();
  const data = event.notification.data;
  const wanted = data && typeof data.url === 'string' ? data.url : '/';
  const target = new URL(wanted, self.location.origin);
  // Only our own pages: a notification never sends the user elsewhere.
  const url = target.origin === self.location.origin ? target.href : new URL('/', self.location.origin).href;
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const ours = windows.filter((client) => new URL(client.url).origin === self.location.origin);
  const client = ours.find((candidate) => candidate.focused) ?? ours[0];
  if (!client) return self.clients.openWindow(url);
  let shown = client;
  if (client.url !== url) {
    try {
      shown = (await client.navigate(url)) ?? client;
    } catch {
      // navigate() works only on windows this worker controls: open the page afresh instead.
      return self.clients.openWindow(url);
    }
  }
  try {
    return await shown.focus();
  } catch {
    // focus() is allowed only during a real click; the window has the right page regardless.
    return shown;
  }
};

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(self.relaypacsNotificationClick(event));
});
